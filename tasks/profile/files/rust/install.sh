#!/bin/sh
# Offline installer of the compatbuild test profile (written for it; not rust-installer's).
# Reads the layout of Rust's combined installer: the file 'components' names one directory
# per component, whose manifest.in lists 'file:PATH' and 'dir:PATH' entries to copy under
# the prefix.
set -eu

usage() {
    echo "usage: install.sh [--prefix=DIR] [--components=a,b] [--without=a,b] [--disable-ldconfig]"
}
die() {
    echo "install.sh: error: $*" >&2
    exit 1
}
in_list() {
    case ",$2," in *",$1,"*) return 0 ;; esac
    return 1
}

prefix=/usr/local
components=
without=
ldconfig=yes
for arg in "$@"; do
    case "$arg" in
        --prefix=*) prefix=${arg#--prefix=} ;;
        --components=*) components=${arg#--components=} ;;
        --without=*) without=${arg#--without=} ;;
        --disable-ldconfig) ldconfig=no ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $arg" ;;
    esac
done
[ -n "$prefix" ] || die "--prefix is empty"

src=$(cd "$(dirname "$0")" && pwd)
available=$(tr '\n' ',' < "$src/components")
for name in $(echo "$components,$without" | tr ',' ' '); do
    in_list "$name" "$available" || die "unknown component: $name (this installer has: ${available%,})"
done

mkdir -p "$prefix/lib/rustlib"
installed=0
for comp in $(echo "$available" | tr ',' ' '); do
    if [ -n "$components" ] && ! in_list "$comp" "$components"; then continue; fi
    if in_list "$comp" "$without"; then continue; fi
    echo "install: installing component '$comp'"
    record="$prefix/lib/rustlib/manifest-$comp"
    : > "$record"
    while IFS= read -r entry || [ -n "$entry" ]; do
        path=${entry#*:}
        case "$entry" in
            file:*)
                mkdir -p "$(dirname "$prefix/$path")"
                cp -P "$src/$comp/$path" "$prefix/$path"
                echo "install: $prefix/$path" ;;
            dir:*)
                mkdir -p "$prefix/$path"
                cp -R "$src/$comp/$path/." "$prefix/$path/"
                echo "install: $prefix/$path/" ;;
            *) die "bad entry in $comp/manifest.in: $entry" ;;
        esac
        echo "$entry" >> "$record"
    done < "$src/$comp/manifest.in"
    if ! grep -qx "$comp" "$prefix/lib/rustlib/components" 2>/dev/null; then
        echo "$comp" >> "$prefix/lib/rustlib/components"
    fi
    installed=$((installed + 1))
done
[ "$installed" -gt 0 ] || die "no component selected"
cp "$src/rust-installer-version" "$prefix/lib/rustlib/rust-installer-version"
if [ "$ldconfig" = yes ] && command -v ldconfig > /dev/null 2>&1; then
    ldconfig || echo "install.sh: warning: ldconfig failed" >&2
fi
echo "install: installed $installed component(s) under $prefix"
