#!/usr/bin/env bash
# The reference writer's pipeline, for the benchmark: what Qubes' qvm-backup does, with the stock
# tools, one step after another. Per archived file: GNU tar --sparse | gzip, cut into 100 MiB
# chunks, each sealed by the stock `scrypt enc` (its own parameter choice unless SCRYPT_ARGS is
# set), every member appended with its own `tar -cO --posix` run. qubes.xml lists one AppVM
# (vm1/private.img) and the dom0 home, so the result is a complete v4 backup.
#
# usage: reference-create.sh OUT PASSFILE IMAGE HOME_DIR   (env: SCRYPT_ARGS, BACKUP_ID, CHUNK)
set -euo pipefail
out=$1 passfile=$2 image=$3 home=$4
pass=$(head -n1 "$passfile")
id=${BACKUP_ID:-20261122T120000-4242}
chunk=${CHUNK:-104857600}
stage=$(mktemp -d "${TMPDIR:-/tmp}/qb-ref-XXXXXX")
trap 'rm -rf "$stage"' EXIT
user=$(basename "$home")

enc() { # enc PASS-STRING FILE  → FILE.enc, FILE removed
  printf '%s\n' "$1" | scrypt enc -P ${SCRYPT_ARGS:-} "$2" "$2.enc"
  rm -f "$2"
}
archive() { # archive SRC SUBDIR NAME DEREF → chunks under $stage, names on stdout
  local src=$1 sub=$2 name=$3 deref=$4 base
  base=$(basename "$src")
  mkdir -p "$stage/$sub"
  tar -Pc --sparse -C "$(dirname "$src")" $deref --use-compress-program=gzip \
    --xform="s:^$base:$sub$name:" "$base" |
    split -b "$chunk" -d -a 3 - "$stage/$sub$name."
  for c in "$stage/$sub$name".[0-9][0-9][0-9]; do
    enc "$id!${c#"$stage/"}!$pass" "$c"
    echo "${c#"$stage/"}.enc"
  done
}

printf 'version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=%s\n' "$id" >"$stage/backup-header"
printf '%s\n' "backup-header!$pass" | scrypt enc -P ${SCRYPT_ARGS:-} "$stage/backup-header" "$stage/backup-header.hmac"
mapfile -t vm < <(archive "$(readlink -f "$image")" vm1/ private.img --dereference)
mapfile -t hm < <(archive "$(readlink -f "$home")" dom0-home/ "$user" "")
size=$(( $(du -sb "$stage" | cut -f1) + 1048576 ))
cat >"$stage/qubes.xml" <<EOF
<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels><label color="0xcc0000" id="label-1">red</label><label color="0x000000" id="label-8">black</label></labels>
  <pools/>
  <properties/>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties><property name="label">black</property></properties>
      <features><feature name="backup-content">1</feature><feature name="backup-path">dom0-home/$user</feature><feature name="backup-size">$size</feature></features>
      <tags/>
    </domain>
    <domain id="domain-1" class="StandaloneVM">
      <properties><property name="name">vm</property><property name="label">red</property></properties>
      <features><feature name="backup-content">1</feature><feature name="backup-path">vm1/</feature><feature name="backup-size">$size</feature></features>
      <tags/>
    </domain>
  </domains>
</qubes>
EOF
tar -Pc -C "$stage" --use-compress-program=gzip qubes.xml >"$stage/qubes.xml.000"
rm "$stage/qubes.xml"
enc "$id!qubes.xml.000!$pass" "$stage/qubes.xml.000"

: >"$out"
for m in backup-header backup-header.hmac qubes.xml.000.enc "${vm[@]}" "${hm[@]}"; do
  tar -cO --posix -C "$stage" "$m" >>"$out"
done
