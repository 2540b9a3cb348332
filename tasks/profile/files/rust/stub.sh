#!/bin/sh
# compatbuild test profile: a stub @TOOL@, not a compiler.
echo "@TOOL@ @VERSION@ (compatbuild test profile stub)"
