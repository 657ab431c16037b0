//! The checkpoint loader (and the judge loader, which shares its tensor checks) on arbitrary
//! file contents.
#![no_main]

use eqprop::checkpoint::load_bytes;
use eqprop::judge::Judge;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    match load_bytes(data, path) {
        Ok(ckpt) => {
            let net = &ckpt.network;
            assert_eq!(net.sizes(), &ckpt.hyperparams.layers[..]);
            let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
            assert!(net.weights().iter().all(|w| finite(w.as_slice())));
            assert!(net.biases().iter().all(|b| finite(b)));
        }
        Err(e) => assert!(e.to_string().contains("fuzz.safetensors"), "{e}"),
    }
    match Judge::load_bytes(data, path) {
        Ok(judge) => assert!(judge.pixels() > 0),
        Err(e) => assert!(e.to_string().contains("fuzz.safetensors"), "{e}"),
    }
});
