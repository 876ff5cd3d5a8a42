#!/bin/sh
# Generates the Python modules for ../../proto with Debian's protoc and gRPC
# plugin (apt-get install protobuf-compiler protobuf-compiler-grpc
# libprotobuf-dev) into DIR, by default ./gen next to this script.
#
#   ./generate.sh [DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/gen}
mkdir -p "$out"
cd "$here/../../proto"
protoc -I . --python_out="$out" --grpc_python_out="$out" \
	--plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
	parley/v1/*.proto
