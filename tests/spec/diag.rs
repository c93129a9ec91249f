//! Diagnostic notation, for the dump (`SPEC_DUMP=1`): one line per item, hex then
//! `# comment`; and the CBOR head reader it shares with the examples.

pub(crate) fn diag(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    item(bytes, &mut pos, 0, &mut out, None);
    assert_eq!(pos, bytes.len(), "trailing bytes");
    out
}

fn line(out: &mut String, depth: usize, hex: &str, comment: &str) {
    let code = format!("{}{}", "  ".repeat(depth), hex);
    if comment.is_empty() {
        out.push_str(&format!("{code}\n"));
        return;
    }
    let pad = 44usize.saturating_sub(code.len()).max(1);
    out.push_str(&format!("{code}{}# {comment}\n", " ".repeat(pad)));
}

/// Whether the `n` items at `pos` are all integers below 256 (and there are more than 8).
fn small_uints(b: &[u8], mut pos: usize, n: u64) -> bool {
    if n <= 8 {
        return false;
    }
    for _ in 0..n {
        match b.get(pos) {
            Some(0x00..=0x17) => pos += 1,
            Some(0x18) => pos += 2,
            _ => return false,
        }
    }
    true
}

pub(crate) fn head(b: &[u8], pos: &mut usize) -> (u8, u64, usize) {
    let start = *pos;
    let ib = b[*pos];
    *pos += 1;
    let major = ib >> 5;
    let info = ib & 0x1f;
    let arg = match info {
        0..=23 => u64::from(info),
        24..=27 => {
            let n = 1usize << (info - 24);
            let mut v = 0u64;
            for i in 0..n {
                v = (v << 8) | u64::from(b[*pos + i]);
            }
            *pos += n;
            v
        }
        _ => panic!("indefinite lengths are not used"),
    };
    (major, arg, start)
}

fn item(b: &[u8], pos: &mut usize, depth: usize, out: &mut String, label: Option<&str>) {
    let (major, arg, start) = head(b, pos);
    let hdr = hex::encode(&b[start..*pos]);
    let pre = label.map(|l| format!("{l}: ")).unwrap_or_default();
    match major {
        0 => line(out, depth, &hdr, &format!("{pre}unsigned({arg})")),
        2 => {
            let data = &b[*pos..*pos + arg as usize];
            *pos += arg as usize;
            if data.len() <= 8 {
                let h = format!("{hdr} {}", hex::encode(data));
                line(out, depth, &h, &format!("{pre}bytes({arg})"));
            } else {
                line(out, depth, &hdr, &format!("{pre}bytes({arg})"));
                for chunk in data.chunks(16) {
                    line(out, depth + 1, &hex::encode(chunk), "");
                }
            }
        }
        3 => {
            let data = &b[*pos..*pos + arg as usize];
            *pos += arg as usize;
            let s = String::from_utf8_lossy(data);
            if data.len() <= 12 {
                let h = format!("{hdr} {}", hex::encode(data));
                line(out, depth, &h, &format!("{pre}{s:?}"));
            } else {
                line(out, depth, &hdr, &format!("{pre}text({arg}) {s:?}"));
                for chunk in data.chunks(16) {
                    line(out, depth + 1, &hex::encode(chunk), "");
                }
            }
        }
        4 if small_uints(b, *pos, arg) => {
            // A byte sequence serialized without serde_bytes: integers, eight to a line.
            line(
                out,
                depth,
                &hdr,
                &format!("{pre}array({arg}) of integers (bytes)"),
            );
            let mut row = Vec::new();
            for _ in 0..arg {
                let (_, _, s) = head(b, pos);
                row.push(hex::encode(&b[s..*pos]));
                if row.len() == 8 {
                    line(out, depth + 1, &row.join(" "), "");
                    row.clear();
                }
            }
            if !row.is_empty() {
                line(out, depth + 1, &row.join(" "), "");
            }
        }
        4 => {
            line(out, depth, &hdr, &format!("{pre}array({arg})"));
            for _ in 0..arg {
                item(b, pos, depth + 1, out, None);
            }
        }
        5 => {
            line(out, depth, &hdr, &format!("{pre}map({arg})"));
            for _ in 0..arg {
                // Keys are short texts: print them on the value's line.
                let save = *pos;
                let (kmajor, klen, _) = head(b, pos);
                if kmajor == 3 && klen <= 16 {
                    let kbytes = &b[*pos..*pos + klen as usize];
                    *pos += klen as usize;
                    let k = String::from_utf8_lossy(kbytes).to_string();
                    let h = hex::encode(&b[save..*pos]);
                    line(out, depth + 1, &h, &format!("{k:?}:"));
                    item(b, pos, depth + 2, out, None);
                } else {
                    *pos = save;
                    item(b, pos, depth + 1, out, Some("key"));
                    item(b, pos, depth + 1, out, None);
                }
            }
        }
        7 => {
            let what = match (b[start] & 0x1f, arg) {
                (20, _) => "false".to_string(),
                (21, _) => "true".to_string(),
                (22, _) => "null".to_string(),
                (27, bits) => format!("float64({})", f64::from_bits(bits)),
                (26, bits) => format!("float32({})", f32::from_bits(bits as u32)),
                (25, bits) => format!("float16(0x{bits:04x})"),
                (_, v) => format!("simple({v})"),
            };
            line(out, depth, &hdr, &format!("{pre}{what}"));
        }
        m => panic!("major type {m} is not used"),
    }
}
