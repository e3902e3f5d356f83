//! QR codes drawn with Unicode half blocks for an SSH terminal.

use anyhow::{Context, Result};
use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, as the QR specification asks (4).
pub(crate) const QUIET_ZONE: usize = 4;
/// Sets bright-white foreground on black background for one line.
pub(crate) const LINE_START: &str = "\x1b[97;40m";
/// Resets the colours at the end of a line.
pub(crate) const LINE_END: &str = "\x1b[0m\r\n";

/// Draws `data` (an `otpauth://` URI) as a QR code for a terminal.
///
/// Each character cell holds two module rows with the half blocks `▀ ▄ █` and
/// space; light modules are drawn as foreground, and every line forces bright
/// white on black (ANSI SGR 97;40) so the code reads the right way round on
/// dark and light terminal themes alike. A 4-module quiet zone surrounds it.
/// Lines end in `"\r\n"`, as a PTY in raw mode needs. Error correction level M.
/// A 100-byte URI gives 45 columns × 23 lines.
pub fn qr_terminal(data: &str) -> Result<String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
        .context("the text is too long for a QR code")?;
    Ok(draw(&code))
}

fn draw(code: &QrCode) -> String {
    let width = code.width();
    let colors = code.to_colors();
    let side = width + 2 * QUIET_ZONE;
    // Light if inside the drawing (code or quiet zone) and not a dark module.
    let light = |x: usize, y: usize| -> bool {
        if y >= side {
            return false; // below the drawing: terminal background
        }
        let (cx, cy) = (x.wrapping_sub(QUIET_ZONE), y.wrapping_sub(QUIET_ZONE));
        if cx >= width || cy >= width {
            return true; // quiet zone
        }
        colors[cy * width + cx] == Color::Light
    };
    let mut out = String::with_capacity(side.div_ceil(2) * (side * 3 + LINE_START.len() + LINE_END.len()));
    for row in (0..side).step_by(2) {
        out.push_str(LINE_START);
        for x in 0..side {
            out.push(match (light(x, row), light(x, row + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push_str(LINE_END);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a drawing back into rows of light (true) / dark modules.
    fn parse(drawing: &str) -> Vec<Vec<bool>> {
        assert!(drawing.ends_with("\r\n"));
        let mut rows = Vec::new();
        for line in drawing.split_terminator("\r\n") {
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "stray line break in {line:?}"
            );
            let cells = line
                .strip_prefix(LINE_START)
                .and_then(|l| l.strip_suffix("\x1b[0m"))
                .expect("each line sets and resets its colours");
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in cells.chars() {
                let (t, b) = match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected {other:?}"),
                };
                top.push(t);
                bottom.push(b);
            }
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    const URI: &str = "otpauth://totp/bastion:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=bastion";

    #[test]
    fn drawing_is_the_code_plus_quiet_zone() {
        let code = QrCode::with_error_correction_level(URI.as_bytes(), EcLevel::M).unwrap();
        let w = code.width();
        let side = w + 2 * QUIET_ZONE;
        let rows = parse(&qr_terminal(URI).unwrap());
        assert_eq!(rows.len(), side.div_ceil(2) * 2);
        let colors = code.to_colors();
        for (y, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), side);
            for (x, &is_light) in row.iter().enumerate() {
                let expected = if y >= side {
                    false
                } else if x < QUIET_ZONE || y < QUIET_ZONE || x >= QUIET_ZONE + w || y >= QUIET_ZONE + w {
                    true
                } else {
                    colors[(y - QUIET_ZONE) * w + (x - QUIET_ZONE)] == Color::Light
                };
                assert_eq!(is_light, expected, "module ({x}, {y})");
            }
        }
        // Small enough for an 80×24 terminal.
        assert!(side <= 80 && side.div_ceil(2) <= 24, "{side}");
    }

    #[test]
    fn a_decoder_reads_the_drawing_back() {
        // Rasterise the terminal cells as a phone camera would see them
        // (light modules white, the rest black), then decode.
        let rows = parse(&qr_terminal(URI).unwrap());
        let scale = 4;
        let (w, h) = (rows[0].len() * scale, rows.len() * scale);
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| if rows[y / scale][x / scale] { 255 } else { 0 });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code found");
        let (_, content) = grids[0].decode().expect("decodes");
        assert_eq!(content, URI);
    }

    #[test]
    fn too_long_is_an_error() {
        assert!(qr_terminal(&"x".repeat(5000)).is_err());
    }
}
