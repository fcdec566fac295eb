//! Rootless disk assembly: partition tables, ext4 from a directory, the FAT ESP, GRUB.
