use proptest::prelude::*;
use serde_json::json;

use super::*;

fn bytes(enc: &Enc, value: Value) -> Result<Vec<u8>, Misfit> {
    let mut out = Vec::new();
    write(enc, &value, &mut out).map(|()| out)
}

#[test]
fn scalars_as_clickhouse_reads_them() {
    assert_eq!(bytes(&Enc::I32, json!(-2)), Ok(vec![0xfe, 0xff, 0xff, 0xff]));
    assert_eq!(bytes(&Enc::Str, json!("ab")), Ok(vec![2, b'a', b'b']));
    assert_eq!(bytes(&Enc::Bytes, json!("00ff")), Ok(vec![2, 0x00, 0xff]));
    assert_eq!(bytes(&Enc::Fixed(2), json!("00ff")), Ok(vec![0x00, 0xff]));
    assert!(bytes(&Enc::Fixed(3), json!("00ff")).is_err());
    assert_eq!(bytes(&Enc::Nullable(Box::new(Enc::I32)), Value::Null), Ok(vec![1]));
    assert_eq!(bytes(&Enc::Nullable(Box::new(Enc::Bool)), json!(true)), Ok(vec![0, 1]));
    assert_eq!(bytes(&Enc::Array(Box::new(Enc::Bool)), Value::Null), Ok(vec![0]), "a missing array is empty");
    assert!(bytes(&Enc::Str, Value::Null).is_err(), "null in a column that is not nullable");
    assert_eq!(bytes(&Enc::Date, json!(1)), Ok(vec![1, 0]));
    assert!(bytes(&Enc::Date, json!(-1)).is_err(), "before 1970: outside Date");
    assert_eq!(bytes(&Enc::Date32, json!(-1)), Ok((-1i32).to_le_bytes().to_vec()));
    assert_eq!(bytes(&Enc::Seconds { per_second: 1000 }, json!(1999)), Ok(1u32.to_le_bytes().to_vec()));
    // UUID: the two 64-bit halves, each little-endian.
    let uuid = bytes(&Enc::Uuid, json!("00112233-4455-6677-8899-aabbccddeeff")).expect("uuid");
    assert_eq!(uuid, [0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88]);
    assert_eq!(bytes(&Enc::Json, json!({"a": [1]})), Ok([&[9u8][..], b"{\"a\":[1]}"].concat()));
}

#[test]
fn maps_both_ways() {
    let map = json!({"a": "x", "b": "y"});
    assert_eq!(bytes(&Enc::Map(Box::new(Enc::Str)), map.clone()), Ok(vec![2, 1, b'a', 1, b'x', 1, b'b', 1, b'y']));
    assert_eq!(bytes(&Enc::MapKeys, map.clone()), Ok(vec![2, 1, b'a', 1, b'b']));
    assert_eq!(bytes(&Enc::MapValues(Box::new(Enc::Str)), map), Ok(vec![2, 1, b'x', 1, b'y']));
}

#[test]
fn decimals_exactly() {
    let d = |width, precision, text: &str| bytes(&Enc::Decimal { width, precision }, json!(text));
    assert_eq!(d(4, 9, "2635"), Ok(2635i32.to_le_bytes().to_vec()));
    assert_eq!(d(8, 12, "-5"), Ok((-5i64).to_le_bytes().to_vec()));
    assert_eq!(d(16, 39, "-170141183460469231731687303715884105728"), Ok(i128::MIN.to_le_bytes().to_vec()));
    assert!(d(4, 4, "12345").is_err(), "more digits than the precision");
    // Past 128 bits avro_to_json gives hex: a 256-bit decimal.
    let mut le = vec![0x00; 32];
    le[0] = 7;
    assert_eq!(d(32, 76, &format!("0x{}07", "00".repeat(31))), Ok(le));
    let text = |scale, v: &str| bytes(&Enc::DecimalText { scale }, json!(v));
    assert_eq!(text(2, "-5"), Ok([&[5u8][..], b"-0.05"].concat()));
    assert_eq!(text(2, "123456"), Ok([&[7u8][..], b"1234.56"].concat()));
    assert_eq!(text(0, "42"), Ok([&[2u8][..], b"42"].concat()));
}

proptest! {
    /// Any value within the precision's digits reaches the width as the same number.
    #[test]
    fn decimal_round_trip(n in any::<i64>()) {
        let text = n.to_string();
        let out = bytes(&Enc::Decimal { width: 16, precision: 38 }, json!(text)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(i128::from_le_bytes(out.try_into().map_err(|_| TestCaseError::fail("16 bytes"))?), i128::from(n));
        let out = bytes(&Enc::Decimal { width: 8, precision: 18 }, json!(text));
        let fits = n.unsigned_abs() < 1_000_000_000_000_000_000;
        prop_assert_eq!(out.is_ok(), fits);
        if let Ok(out) = out {
            prop_assert_eq!(i64::from_le_bytes(out.try_into().map_err(|_| TestCaseError::fail("8 bytes"))?), n);
        }
    }

    #[test]
    fn varints_decode_back(n in any::<u64>()) {
        let mut out = Vec::new();
        varint(n, &mut out);
        let mut back = 0u64;
        for (i, b) in out.iter().enumerate() {
            back |= u64::from(b & 0x7f) << (7 * i);
        }
        prop_assert_eq!(back, n);
        prop_assert_eq!(out.last().map(|b| b & 0x80), Some(0));
    }
}
