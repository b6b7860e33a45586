//! Config files: YAML text through `Config::from_yaml_str`, the function `Config::load` uses
//! (parse, `os.environ/NAME` resolution against the process environment, validation).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Once;

fuzz_target!(|data: &[u8]| {
    // One variable the seeds reference, so both a resolved and an unset reference are reached.
    static ENV: Once = Once::new();
    ENV.call_once(|| std::env::set_var("SLUICE_FUZZ_KEY", "sk-fuzz-0123456789"));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = sluice::config::Config::from_yaml_str(text) {
        let _ = config.model_groups();
        let _ = config.keyring();
    }
});
