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
    assert_eq!(bytes(&Enc::Date, json!("1970-01-02")), Ok(vec![1, 0]));
    assert_eq!(bytes(&Enc::Date32, json!("1969-12-31")), Ok((-1i32).to_le_bytes().to_vec()));
    assert!(bytes(&Enc::Date32, json!("1969-02-30")).is_err());
    // UUID: the two 64-bit halves, each little-endian.
    let uuid = bytes(&Enc::Uuid, json!("00112233-4455-6677-8899-aabbccddeeff")).expect("uuid");
    assert_eq!(uuid, [0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88]);
    assert_eq!(bytes(&Enc::Json, json!({"a": [1]})), Ok([&[9u8][..], b"{\"a\":[1]}"].concat()));
}

#[test]
fn times_and_timestamps_from_their_text_exactly() {
    let ticks =
        |unit, v: Value| bytes(&Enc::Ticks(unit), v).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
    assert_eq!(ticks(Unit::Millis, json!("2026-11-01T10:00:00.123Z")), Ok(1_793_527_200_123));
    assert_eq!(ticks(Unit::Micros, json!("2026-11-01T10:00:00.123456Z")), Ok(1_793_527_200_123_456));
    assert_eq!(ticks(Unit::Nanos, json!("1969-12-31T23:59:59.999999999Z")), Ok(-1));
    assert_eq!(ticks(Unit::Micros, json!("2026-11-01T10:00:00.123")), Ok(1_793_527_200_123_000), "local: as UTC");
    assert_eq!(ticks(Unit::Millis, json!("2026-11-01T11:00:00.123+01:00")), Ok(1_793_527_200_123));
    assert_eq!(ticks(Unit::Millis, json!(1_793_527_200_123_i64)), Ok(1_793_527_200_123), "a count as it is");
    assert_eq!(
        ticks(Unit::Millis, json!("2026-11-01T10:00:00.1234Z")),
        Err("\"2026-11-01T10:00:00.1234Z\" has digits finer than the column's milliseconds".to_owned())
    );
    assert_eq!(ticks(Unit::Millis, json!("2026-11-01T10:00:00.1230Z")), Ok(1_793_527_200_123), "zeros are no digits");
    assert!(ticks(Unit::Millis, json!("2026-11-01")).is_err());
    let seconds = |v: Value| bytes(&Enc::Seconds { per_second: 1_000_000 }, v);
    assert_eq!(seconds(json!("2026-11-01T10:00:00.999999Z")), Ok(1_793_527_200_u32.to_le_bytes().to_vec()), "floored");
    assert_eq!(seconds(json!(1_793_527_200_999_999_i64)), Ok(1_793_527_200_u32.to_le_bytes().to_vec()));
    assert!(seconds(json!("1969-12-31T23:59:59Z")).is_err(), "before a DateTime column");
    assert_eq!(bytes(&Enc::Time(Unit::Millis), json!("10:00:00.123")), Ok(36_000_123_i32.to_le_bytes().to_vec()));
    assert_eq!(bytes(&Enc::Time(Unit::Millis), json!(5)), Ok(5_i32.to_le_bytes().to_vec()));
    assert_eq!(bytes(&Enc::Time(Unit::Micros), json!("00:00:01.000001")), Ok(1_000_001_i64.to_le_bytes().to_vec()));
    assert!(bytes(&Enc::Time(Unit::Millis), json!("10:00:00.1234")).is_err());
}

proptest! {
    /// What the decoder writes of a timestamp reaches a column of its unit as the same count.
    #[test]
    fn timestamp_text_round_trip(count in any::<i64>(), unit in prop_oneof![Just(Unit::Millis), Just(Unit::Micros), Just(Unit::Nanos)], zoned in any::<bool>()) {
        let text = sluice_core::calendar::format_date_time(count, unit, zoned);
        let out = bytes(&Enc::Ticks(unit), json!(text)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(i64::from_le_bytes(out.try_into().map_err(|_| TestCaseError::fail("8 bytes"))?), count);
    }
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
    let d = |width, precision, scale, text: &str| bytes(&Enc::Decimal { width, precision, scale }, json!(text));
    assert_eq!(d(4, 9, 2, "26.35"), Ok(2635i32.to_le_bytes().to_vec()));
    assert_eq!(d(4, 9, 2, "26.3"), Ok(2630i32.to_le_bytes().to_vec()), "brought up to the column's scale");
    assert_eq!(d(4, 9, 2, "26.350"), Ok(2635i32.to_le_bytes().to_vec()), "zeros past the scale are no digits");
    assert_eq!(
        d(4, 9, 2, "26.351"),
        Err("\"26.351\" does not fit Decimal(9, 2): more than 2 digits after the decimal point".to_owned())
    );
    assert_eq!(d(8, 12, 2, "-0.05"), Ok((-5i64).to_le_bytes().to_vec()));
    assert_eq!(d(16, 39, 0, "-170141183460469231731687303715884105728"), Ok(i128::MIN.to_le_bytes().to_vec()));
    assert_eq!(
        d(4, 4, 0, "12345"),
        Err("\"12345\" does not fit Decimal(4, 0): 5 digits exceed the precision of 4".to_owned())
    );
    assert!(d(4, 9, 2, "2635").is_ok_and(|b| b == 263_500i32.to_le_bytes()), "a whole number is one");
    assert!(d(4, 9, 2, "1e3").is_err(), "plain text only");
    assert!(bytes(&Enc::Decimal { width: 4, precision: 9, scale: 2 }, json!(26.35)).is_err(), "never a double");
    // Past 128 bits: a 256-bit decimal of 76 digits, and the same negative.
    let nines = "9".repeat(70);
    let le = d(32, 76, 6, &format!("{nines}.999999")).expect("76 digits");
    let mut max = vec![0u8; 32];
    let big = format!("{nines}999999").parse::<u128>().is_err();
    assert!(big, "past 128 bits");
    // 10^76 - 1, little-endian, read back through the text codec.
    max.copy_from_slice(&le);
    max.reverse();
    assert_eq!(text_from_be_bytes(&max, 6), format!("{nines}.999999"));
    let le = d(32, 76, 6, &format!("-{nines}.999999")).expect("76 digits");
    let mut be = le.clone();
    be.reverse();
    assert_eq!(text_from_be_bytes(&be, 6), format!("-{nines}.999999"));
    assert!(d(32, 76, 6, &format!("9{nines}.999999")).is_err(), "77 digits");

    let text = |scale, v: &str| bytes(&Enc::DecimalText { scale }, json!(v));
    assert_eq!(text(2, "-0.05"), Ok([&[5u8][..], b"-0.05"].concat()));
    assert_eq!(text(2, "1234.5"), Ok([&[7u8][..], b"1234.50"].concat()));
    assert_eq!(text(0, "42"), Ok([&[2u8][..], b"42"].concat()));
    assert!(text(0, "4.2").is_err());
}

proptest! {
    /// Any value within the precision's digits reaches the width as the same number, from the
    /// text the decoder makes of it at the column's scale.
    #[test]
    fn decimal_round_trip(n in any::<i64>(), scale in 0u32..=18) {
        let text = sluice_core::decimal::Decimal { unscaled: i128::from(n), scale }.to_string();
        let scale = scale as usize;
        let out = bytes(&Enc::Decimal { width: 16, precision: 38, scale }, json!(text)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(i128::from_le_bytes(out.try_into().map_err(|_| TestCaseError::fail("16 bytes"))?), i128::from(n));
        let out = bytes(&Enc::Decimal { width: 8, precision: 18, scale }, json!(text));
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
