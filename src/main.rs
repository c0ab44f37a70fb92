fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    roampay::cli::main()
}

/// glibc's malloc gives threads arenas of their own (up to eight per core) and rarely
/// hands their freed pages back: in the 30-minute soak (docs/reliability.md) the resident
/// memory grew by about 0.25 MB a minute, steadily, and stayed flat with two arenas.
/// Set before any thread starts; a `MALLOC_ARENA_MAX` in the environment still decides.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: sets one allocator parameter, before the process has other threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
