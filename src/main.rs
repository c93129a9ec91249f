fn main() {
    tune_allocator();
    std::process::exit(swarmstore::cli::run());
}

/// How often the heap's free pages are handed back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// glibc raises its mmap threshold each time a large buffer is freed, so after the first
/// blocks (up to 4 MiB each) every later block buffer comes from the heap arenas, and each
/// arena keeps its high-water mark: a node's memory climbed in steps with every burst of
/// concurrent transfers (the soak saw 45 → 59 MiB over an hour). A fixed threshold keeps
/// block-sized buffers in their own mappings, returned to the system when freed.
///
/// glibc also gives threads arenas of their own, up to eight per core, and an arena keeps
/// the free pages inside it until trimmed, while tokio's blocking pool (store reads, fsyncs)
/// runs on threads that come and go. Arenas are capped at the core count (at least 2), and a
/// thread hands free pages back twice a minute. `swarmstore_heap_in_use_bytes` and
/// `swarmstore_heap_held_bytes` beside the resident size show which of the two grows.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = cores.clamp(2, 8) as i32;
        // SAFETY: mallopt only sets allocator parameters; it is called before any thread
        // starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
        let _ = std::thread::Builder::new()
            .name("heap-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim only returns free heap pages to the system.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
    }
}
