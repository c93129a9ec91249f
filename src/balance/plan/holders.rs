//! A block's live holder set, stored compactly: a view can hold millions of
//! blocks at 10^5 nodes, and almost all of them have R (or R + 1) holders, so
//! the first few are stored inline and only the few blocks with many extras
//! allocate.

/// One live holder of a block: its node index, and whether its copy is an
/// extra replica (only extras are ever dropped).
#[derive(Clone, Copy, Debug)]
pub(super) struct Holder {
    pub(super) node: u32,
    pub(super) extra: bool,
}

/// Holders stored inline: R + 1 covers almost every block of a view.
const INLINE_HOLDERS: usize = 4;

/// A block's live holders: a few inline, more on the heap. A view holds
/// millions of blocks at 10^5 nodes; only the few with extras allocate.
#[derive(Clone, Debug)]
pub(super) enum Holders {
    Inline(u8, [Holder; INLINE_HOLDERS]),
    Heap(Vec<Holder>),
}

impl Holders {
    pub(super) fn new() -> Self {
        Holders::Inline(
            0,
            [Holder {
                node: 0,
                extra: false,
            }; INLINE_HOLDERS],
        )
    }

    pub(super) fn push(&mut self, h: Holder) {
        let spilled = match self {
            Holders::Inline(n, arr) if (*n as usize) < INLINE_HOLDERS => {
                arr[*n as usize] = h;
                *n += 1;
                return;
            }
            Holders::Inline(n, arr) => {
                let mut v = Vec::with_capacity(2 * INLINE_HOLDERS);
                v.extend_from_slice(&arr[..*n as usize]);
                v.push(h);
                v
            }
            Holders::Heap(v) => {
                v.push(h);
                return;
            }
        };
        *self = Holders::Heap(spilled);
    }
}

impl std::ops::Deref for Holders {
    type Target = [Holder];
    fn deref(&self) -> &[Holder] {
        match self {
            Holders::Inline(n, arr) => &arr[..*n as usize],
            Holders::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for Holders {
    fn deref_mut(&mut self) -> &mut [Holder] {
        match self {
            Holders::Inline(n, arr) => &mut arr[..*n as usize],
            Holders::Heap(v) => v,
        }
    }
}

impl<'a> IntoIterator for &'a Holders {
    type Item = &'a Holder;
    type IntoIter = std::slice::Iter<'a, Holder>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Extend<Holder> for Holders {
    fn extend<I: IntoIterator<Item = Holder>>(&mut self, iter: I) {
        for h in iter {
            self.push(h);
        }
    }
}

impl FromIterator<Holder> for Holders {
    fn from_iter<I: IntoIterator<Item = Holder>>(iter: I) -> Self {
        let mut hs = Holders::new();
        hs.extend(iter);
        hs
    }
}
