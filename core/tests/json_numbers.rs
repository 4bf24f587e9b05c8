//! JSON from outside (gateway bodies, `sluice publish` lines) keeps its numbers: a double is read
//! as the nearest one to the text, so what is written to Avro is what the client sent.
//! (serde_json's default float parsing is off by an ulp for some inputs; the workspace turns on
//! its `float_roundtrip` feature. Found by the gateway_body fuzz target: `21e+081`.)

use serde_json::Value;

fn read(text: &str) -> f64 {
    let strict = sluice_core::json::from_slice_strict(text.as_bytes()).map(|v| v.as_f64());
    let lenient = serde_json::from_str::<Value>(text).map(|v| v.as_f64());
    assert_eq!(strict.ok().flatten(), lenient.ok().flatten(), "{text}");
    sluice_core::json::from_slice_strict(text.as_bytes()).ok().and_then(|v| v.as_f64()).unwrap_or(f64::NAN)
}

#[test]
fn doubles_are_read_exactly() {
    for text in ["21e+081", "21e81", "2.1e82", "0.1", "1.7976931348623157e308", "2.2250738585072011e-308", "5e-324"] {
        let expected: f64 = text.parse().expect("Rust's parser is correctly rounded");
        assert_eq!(read(text).to_bits(), expected.to_bits(), "{text}");
    }
}

#[test]
fn doubles_survive_a_round_trip() {
    for text in ["21e+081", "123456789.123456789e-300", "0.30000000000000004"] {
        let value = read(text);
        assert_eq!(
            read(&serde_json::to_string(&value).expect("a double serialises")).to_bits(),
            value.to_bits(),
            "{text}"
        );
    }
}
