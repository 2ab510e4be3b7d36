//! The `sleep`/`curl` sample pods: a client container that idles until the user runs
//! commands in it.

/// Waits forever; the process ends when it is killed.
pub async fn forever() {
    std::future::pending::<()>().await;
}
