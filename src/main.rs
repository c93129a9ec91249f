fn main() {
    tune_allocator();
    std::process::exit(swarmstore::cli::run());
}

/// glibc raises its mmap threshold each time a large buffer is freed, so after the first
/// blocks (up to 4 MiB each) every later block buffer comes from the heap arenas, and each
/// arena keeps its high-water mark: a node's memory climbed in steps with every burst of
/// concurrent transfers (the soak saw 45 → 59 MiB over an hour). A fixed threshold keeps
/// block-sized buffers in their own mappings, returned to the system when freed.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
