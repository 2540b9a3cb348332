#!/bin/sh
# Regenerate tests/data/rpms/repo: three small real RPMs built by rpmbuild and a repository
# made by createrepo_c (sha256 checksums, gzipped primary.xml), as Fedora's archive has.
# Needs Debian's `rpm` and `createrepo-c` packages; the output is committed, so the tests
# need neither.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
mkdir -p "$top/SPECS"
spec() { # name epoch version release arch requires provides
    cat > "$top/SPECS/$1.spec" <<SPEC
Name: $1
Epoch: $2
Version: $3
Release: $4
Summary: compatbuild test package $1
License: MIT
BuildArch: $5
${6:+Requires: $6}
${7:+Provides: $7}
%description
A package for tasks.rpms tests.
%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\necho $1\n' > %{buildroot}/usr/bin/$1
chmod 755 %{buildroot}/usr/bin/$1
%files
/usr/bin/$1
SPEC
    rpmbuild --quiet --define "_topdir $top" --define "_buildhost compatbuild" \
        --define "use_source_date_epoch_as_buildtime 1" --target "$5" -bb "$top/SPECS/$1.spec"
}
export SOURCE_DATE_EPOCH=1386690000
spec tool 0 1.0 1.fc20 x86_64 "helper >= 1:2.0" ""
spec helper 1 2.1 3.fc20 x86_64 "" "helper-api = 5"
spec docs 0 0.5 1.fc20 noarch "helper-api >= 4" ""
rm -rf "$here/repo"
mkdir -p "$here/repo/Packages"
cp "$top"/RPMS/*/*.rpm "$here/repo/Packages/"
createrepo_c --quiet --no-database --revision 1 --set-timestamp-to-revision "$here/repo"
