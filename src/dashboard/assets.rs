//! The single-page app's files (`src/dashboard/assets/`, written by the front end), embedded in
//! the binary at build time in every profile: nothing is read from disk or a CDN at run time.

use rust_embed::RustEmbed;
use std::borrow::Cow;

#[derive(RustEmbed)]
#[folder = "src/dashboard/assets/"]
struct Files;

/// An embedded file: its bytes and content type.
pub struct Asset {
    /// The bytes.
    pub data: Cow<'static, [u8]>,
    /// `Content-Type`, with a charset for text.
    pub content_type: String,
}

/// The file at `path` (relative to the assets folder), if embedded.
pub fn get(path: &str) -> Option<Asset> {
    // Hidden files and parent references are never served (rust-embed has no such entries,
    // but the rule does not depend on that).
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg.starts_with('.'))
    {
        return None;
    }
    let f = Files::get(path)?;
    let mime = f.metadata.mimetype();
    let content_type = if mime.starts_with("text/")
        || mime == "application/javascript"
        || mime == "application/json"
        || mime == "image/svg+xml"
    {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    Some(Asset {
        data: f.data,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_odd_paths() {
        assert!(get("../Cargo.toml").is_none());
        assert!(get(".gitkeep").is_none());
        assert!(get("").is_none());
        assert!(get("no-such-file.js").is_none());
    }
}
