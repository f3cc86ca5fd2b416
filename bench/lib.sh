# Shared by the bench scripts (sourced, from the repository's root).

# targets EXAMPLE...: sets TARGET to the directory holding hookflow and the named examples: the
# TARGET given (binaries built already, e.g. another CARGO_TARGET_DIR's release/), or
# target/release after building them here.
targets() {
  TARGET=${TARGET:-}
  [ -n "$TARGET" ] && return 0
  # Apart: built together, the examples' dev-dependencies would add their features (a second
  # TLS provider) to the binary measured.
  cargo build --release --quiet --bin hookflow
  local e args=()
  for e in "$@"; do args+=(--example "$e"); done
  cargo build --release --quiet "${args[@]}"
  TARGET=target/release
}

# workdir: a fresh temporary directory in $work (with $work/flows), removed at exit, when every
# process whose pid the script added to the array pids is killed too.
workdir() {
  work=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
  mkdir -p "$work/flows"
}
