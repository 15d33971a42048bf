#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| linkerd_proxy::fuzz::tap_match(data));
