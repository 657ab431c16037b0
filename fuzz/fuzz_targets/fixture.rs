//! The Gymnasium fixture parser and replay on arbitrary text.
#![no_main]

use eqprop::env::fixture::replay_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rep) = replay_json(text) {
        assert!(rep.episodes > 0 && rep.steps >= rep.episodes);
        assert!(rep.mismatches <= rep.values);
        assert!(rep.bad_steps <= rep.steps + rep.episodes);
        assert!(rep.details.len() <= 20 && rep.details.len() <= rep.bad_steps);
        let _ = rep.summary();
    }
});
