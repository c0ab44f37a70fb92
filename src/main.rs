/// jemalloc instead of glibc's malloc, for every allocation of the process (the
/// dependency replaces `malloc` itself, so SQLite's C code uses it too). glibc gave each
/// thread an arena of its own and seldom handed their freed pages back: resident memory
/// crept up in the 30-minute soak (docs/reliability.md); jemalloc also made webhook
/// ingestion on PostgreSQL faster (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    roampay::cli::main()
}
