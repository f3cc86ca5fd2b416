//! What the process does when sled cannot go on.

use crate::store::EXIT_STORE_FAILED;

/// sled cannot go on after an I/O error of its own: its next flush waits forever for the write
/// that failed (seen with a full disk: the writer thread hung in `Tree::flush`, the engine with it,
/// while webhooks were still accepted into the journal and never ran — and space coming back
/// changed nothing). Everything acknowledged is durable (the intake journal; sled as of its
/// last flush), so the process exits for its supervisor to start it again, which admits the
/// journal's runs once the disk has room (docs/operations.md, "After a crash or a disk
/// problem").
pub(super) fn give_up(what: &str, e: &sled::Error) -> ! {
    tracing::error!(
        error = %e,
        "the store's disk failed ({what}); sled cannot continue after an I/O error, so hookflow exits (status {EXIT_STORE_FAILED}) for its supervisor to start it again: accepted runs are kept in the intake journal and run after the restart"
    );
    std::process::exit(EXIT_STORE_FAILED);
}
