#!/bin/sh
# Write .env from .env.example, filling every empty secret with a freshly generated one.
# Usage: sh docker/make-env.sh [TARGET]   (default .env; never overwrites an existing file)
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
example="$here/.env.example"
target="${1:-$here/.env}"

if [ -e "$target" ]; then
    echo "make-env: $target already exists; not overwriting it" >&2
    exit 1
fi
command -v openssl >/dev/null || { echo "make-env: openssl is needed" >&2; exit 1; }

umask 077
tmp="$target.tmp.$$"
trap 'rm -f "$tmp"' EXIT
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        *FERNET_KEY=)  # Fernet: url-safe base64 of 32 random bytes
            line="$line$(openssl rand -base64 32 | tr '+/' '-_')" ;;
        *PASSWORD=|*SECRET=|*SECRET_KEY=|*TOKEN=)  # hex: safe inside connection URLs
            line="$line$(openssl rand -hex 48)" ;;
    esac
    printf '%s\n' "$line"
done <"$example" >"$tmp"
mv "$tmp" "$target"
trap - EXIT
echo "make-env: wrote $target"
