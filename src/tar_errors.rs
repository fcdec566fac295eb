//! One-line errors for archives read with the tar crate. Its header errors quote the header
//! it could not parse ("numeric field was not a number: <field> when getting cksum for
//! <name>"): on a file that is not a tar at all, a gzipped text file say, that quotes the
//! file's own bytes, line breaks and all. [`describe`] keeps the problem and drops the quote.

/// The tar crate's error `e` without the header bytes it quotes.
pub fn describe(e: &std::io::Error) -> String {
    let text = e.to_string();
    // The problem is named before the first ':'; what follows quotes the header.
    let problem = text.split([':', '\n']).next().unwrap_or("").trim();
    if problem.is_empty() {
        "unreadable tar header".to_string()
    } else {
        problem.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_file_read_as_a_tar_is_described_without_its_bytes() {
        let text =
            b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
        let mut block = text.to_vec();
        block.resize(1024, 0);
        let mut archive = tar::Archive::new(&block[..]);
        let Some(Err(err)) = archive.entries().unwrap().next() else {
            panic!("a text file read as a tar header");
        };
        // What the crate says: the bytes of the "header", over two lines.
        assert!(err.to_string().contains("daemon"), "{err}");
        let described = describe(&err);
        assert_eq!(described, "numeric field was not a number");
    }

    #[test]
    fn errors_without_a_quote_are_kept() {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt deflate stream");
        assert_eq!(describe(&e), "corrupt deflate stream");
    }
}
