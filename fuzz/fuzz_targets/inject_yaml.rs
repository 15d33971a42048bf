#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| linkerd_cli::fuzz::inject_yaml(data));
