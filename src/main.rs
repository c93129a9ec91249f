fn main() {
    std::process::exit(swarmstore::cli::run());
}
