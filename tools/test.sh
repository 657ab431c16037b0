#!/usr/bin/env bash
# Every test of the repository (the README's test command): the Rust crate's, then the Python
# package's against bindings built from this checkout, never an installed copy.
#
#   bash tools/test.sh [cargo test arguments...]
#
# The Python tests need numpy, tqdm and pytest (`pip install -r requirements.txt`); they read the
# same data as the Rust tests (the committed sample, or $EQPROP_DATA_DIR) and run the `eqprop`
# binary that `cargo test --release` builds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release "$@"
# The extension as maturin builds it (no libpython linked in), into a package folder of its own.
PYO3_BUILD_EXTENSION_MODULE=1 cargo build --release -p eqprop-python
suffix=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
package=target/python/eqprop
rm -rf "$package" && mkdir -p "$package"
cp python/eqprop/*.py python/eqprop/*.pyi python/eqprop/py.typed "$package"/
native=target/release/lib_eqprop.so
[ -f "$native" ] || native=target/release/lib_eqprop.dylib
cp "$native" "$package/_eqprop$suffix"
PYTHONPATH="$PWD/target/python" python3 -m pytest -q -p no:cacheprovider python/tests
