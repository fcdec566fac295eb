#!/bin/bash
# Spreads log rotation of a fleet over the quarter hour: the agent runs this at bootstrap, and
# each VM picks its own minute instead of the image's 0,15,30,45.
set -e
minute=$((RANDOM % 15))
echo "${minute},$((minute + 15)),$((minute + 30)),$((minute + 45)) * * * * root /usr/bin/logrotate-cron" > /etc/cron.d/logrotate
chmod 0600 /etc/cron.d/logrotate
