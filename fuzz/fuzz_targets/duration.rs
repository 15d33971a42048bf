#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| linkerd_controller::fuzz::duration(data));
