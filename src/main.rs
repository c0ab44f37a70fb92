fn main() -> std::process::ExitCode {
    roampay::cli::main()
}
