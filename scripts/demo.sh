#!/usr/bin/env bash
# One command from a fresh clone to a first backup: installs and builds qbackup, makes sample
# data (a sparse 64 MiB disk image and a small home directory) under ./demo, and backs it up.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent

demo=demo
rm -rf "$demo/src" && mkdir -p "$demo/src/home/user/Documents" "$demo/backups"
img=$demo/src/work-private.img
truncate -s 64M "$img"
head -c 2000000 /dev/urandom | dd of="$img" bs=1M seek=17 conv=notrunc status=none
printf 'hello from the work qube\n' | dd of="$img" bs=1M seek=40 conv=notrunc status=none
printf 'buy milk\nrestore backups\n' >"$demo/src/home/user/Documents/todo.txt"
ln -sf Documents/todo.txt "$demo/src/home/user/todo-link"
# a demo passphrase in a file; for real backups use the prompt or --passphrase-command
printf 'demo passphrase, change me\n' >"$demo/passphrase.txt"
chmod 600 "$demo/passphrase.txt"

# --scrypt-logn 14 keeps the demo quick; real backups use the default (18)
node bin/qbackup.js create -y --passphrase-file "$demo/passphrase.txt" --scrypt-logn 14 \
  "$demo/backups" "work=$img" "dom0=$demo/src/home/user"

latest=$(ls -t "$demo"/backups/qubes-backup-* | head -n1)
echo
echo "Members of $latest (an ordinary tar stream: tar -i -tvf):"
tar -i -tvf "$latest"
