//! RocksDB storage (owned by the store work).
