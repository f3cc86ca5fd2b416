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
