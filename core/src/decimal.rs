//! Exact decimal numbers, the one codec of them: Avro decimals (the unscaled value's big-endian
//! two's complement), Debezium's `numeric` columns (those bytes in base64, decimal text, or a
//! double), users' JSON (`"12.34"`), and the text analysts read. Pure code.
//!
//! Every decimal sluice shows is its exact text at its scale: `26.35` for the unscaled 2635 at
//! scale 2, always exactly `scale` digits after the point (`-0.50`, `12.00`), no point at scale
//! 0. [`Decimal`] holds what fits 128 bits (38 digits, ClickHouse's `Decimal128`);
//! [`text_from_be_bytes`] and [`unscaled_be_bytes`] read and write Avro's bytes of any width
//! (a `Decimal256` column's 76 digits and beyond), through a big integer only past 128 bits.

use std::fmt;

use num_bigint::{BigInt, Sign};

/// `unscaled × 10^-scale`, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// The digits, as an integer.
    pub unscaled: i128,
    /// How many of them are after the point.
    pub scale: u32,
}

/// The largest scale a decimal may have: PostgreSQL's (a numeric's display scale is a 14-bit
/// field). The scale comes from the record (its schema's `scale` parameter, a variable-scale
/// value, an exponent in text), so a hostile one is refused here rather than written out as that
/// many digits: the fuzzer's `"scale": "147490424"` made a 147 MB string and panicked the
/// formatter.
pub const MAX_SCALE: u32 = 16_383;

/// 10^`exp`, when it fits an i128 (exp ≤ 38).
fn pow10(exp: u32) -> Option<i128> {
    10_i128.checked_pow(exp)
}

impl Decimal {
    /// The integer `unscaled` (scale 0).
    pub const fn integer(unscaled: i128) -> Self {
        Self { unscaled, scale: 0 }
    }

    /// A value whose scale may be negative (PostgreSQL 15 allows `numeric(5,-2)`): made
    /// non-negative by scaling the unscaled value up.
    pub fn new(unscaled: i128, scale: i64) -> Result<Self, String> {
        if scale >= 0 {
            return match u32::try_from(scale) {
                Ok(scale) if scale <= MAX_SCALE => Ok(Self { unscaled, scale }),
                _ => Err(too_fine(scale)),
            };
        }
        let up = u32::try_from(-scale).ok().and_then(pow10);
        match up.and_then(|f| unscaled.checked_mul(f)) {
            Some(unscaled) => Ok(Self { unscaled, scale: 0 }),
            None if unscaled == 0 => Ok(Self { unscaled: 0, scale: 0 }),
            None => Err(format!("{unscaled}E{} does not fit 128 bits", -scale)),
        }
    }

    /// From the unscaled value's big-endian two's complement bytes (Kafka Connect's `Decimal`).
    pub fn from_be_bytes(bytes: &[u8], scale: i64) -> Result<Self, String> {
        if bytes.is_empty() {
            return Err("a decimal has no bytes".to_owned());
        }
        let negative = bytes[0] & 0x80 != 0;
        let fill = if negative { 0xff } else { 0x00 };
        // Redundant sign bytes in front are allowed; anything wider than 128 bits is not.
        let significant = bytes.iter().position(|b| *b != fill).unwrap_or(bytes.len());
        let start = if significant > 0 && (bytes.get(significant).is_none_or(|b| (b & 0x80 != 0) != negative)) {
            significant - 1
        } else {
            significant
        };
        let tail = &bytes[start.min(bytes.len() - 1)..];
        if tail.len() > 16 {
            return Err(format!("a decimal of {} bytes does not fit 128 bits", bytes.len()));
        }
        let mut wide = [fill; 16];
        wide[16 - tail.len()..].copy_from_slice(tail);
        Self::new(i128::from_be_bytes(wide), scale)
    }

    /// Decimal text: `-12.340`, `5`, `.5`, `+3`, `1.5E-2` (a double's text).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a decimal number");
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], text[at + 1..].parse::<i64>().map_err(|_| bad())?),
            None => (text, 0),
        };
        let (negative, digits) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
            return Err(bad());
        }
        let mut unscaled: i128 = 0;
        for d in whole.bytes().chain(fraction.bytes()) {
            unscaled = unscaled
                .checked_mul(10)
                .and_then(|u| u.checked_add(i128::from(d - b'0')))
                .ok_or_else(|| format!("{text:?} has more digits than 128 bits hold"))?;
        }
        let fraction_digits = i64::try_from(fraction.len()).map_err(|_| bad())?;
        Self::new(if negative { -unscaled } else { unscaled }, fraction_digits - exponent)
    }

    /// The same number at `scale`, when no digit is lost.
    pub fn rescale(self, scale: u32) -> Result<Self, String> {
        if scale > MAX_SCALE {
            return Err(too_fine(scale.into()));
        }
        if scale >= self.scale {
            let up = pow10(scale - self.scale).and_then(|f| self.unscaled.checked_mul(f));
            return match up {
                Some(unscaled) => Ok(Self { unscaled, scale }),
                None if self.unscaled == 0 => Ok(Self { unscaled: 0, scale }),
                None => Err(format!("{self} does not fit 128 bits at scale {scale}")),
            };
        }
        let exact = match pow10(self.scale - scale) {
            Some(f) => (self.unscaled % f == 0).then(|| self.unscaled / f),
            None => (self.unscaled == 0).then_some(0),
        };
        exact.map(|unscaled| Self { unscaled, scale }).ok_or_else(|| {
            format!("{self} has more than {scale} digit{} after the point", if scale == 1 { "" } else { "s" })
        })
    }

    /// The nearest double.
    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The unscaled value's shortest big-endian two's complement bytes, as Avro stores it.
    pub fn to_be_bytes(self) -> Vec<u8> {
        let bytes = self.unscaled.to_be_bytes();
        let mut start = 0;
        while start < 15 {
            let (head, next) = (bytes[start], bytes[start + 1]);
            let redundant = (head == 0x00 && next & 0x80 == 0) || (head == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            start += 1;
        }
        bytes[start..].to_vec()
    }

    /// How many digits the unscaled value has (1 for zero): what a precision bounds.
    pub fn digits(self) -> usize {
        if self.unscaled == 0 { 1 } else { self.unscaled.unsigned_abs().ilog10() as usize + 1 }
    }
}

impl fmt::Display for Decimal {
    /// Plain decimal text with exactly `scale` digits after the point: `-0.05`, `100.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_point(f, self.unscaled < 0, &self.unscaled.unsigned_abs().to_string(), self.scale as usize)
    }
}

/// `digits` (the unscaled magnitude) with the point put `scale` digits from the right.
fn write_point(f: &mut impl fmt::Write, negative: bool, digits: &str, scale: usize) -> fmt::Result {
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        return write!(f, "{sign}{digits}");
    }
    // Zeros in front up to one digit before the point (no `{:0>width$}`: a width past u16::MAX
    // panics, and `scale` is only bounded where a decimal is made).
    let padded = "0".repeat((scale + 1).saturating_sub(digits.len())) + digits;
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    write!(f, "{sign}{whole}.{fraction}")
}

/// The exact text of the decimal whose unscaled value is the big-endian two's complement `bytes`
/// (any width, redundant sign bytes allowed: Avro's `decimal`) at `scale`: exactly `scale` digits
/// after the point, as [`Decimal`]'s `Display` (`26.35`, `-0.50`, `7` at scale 0). No bytes read
/// as 0.
///
/// Past [`MAX_SCALE`] (no column holds such a decimal, and the text would be that many digits
/// long) the same number is written `<unscaled>E-<scale>`, which [`Decimal::parse`] reads.
pub fn text_from_be_bytes(bytes: &[u8], scale: usize) -> String {
    let (negative, digits) = match Decimal::from_be_bytes(bytes, 0) {
        Ok(d) => (d.unscaled < 0, d.unscaled.unsigned_abs().to_string()),
        // Past 128 bits (or no bytes at all).
        Err(_) => {
            let big = BigInt::from_signed_bytes_be(bytes);
            (big.sign() == Sign::Minus, big.magnitude().to_string())
        }
    };
    if scale > MAX_SCALE as usize {
        return format!("{}{digits}E-{scale}", if negative { "-" } else { "" });
    }
    let mut text = String::with_capacity(digits.len() + scale + 3);
    // Writing to a String cannot fail.
    let _ = write_point(&mut text, negative, &digits, scale);
    text
}

/// Why decimal text is not a decimal of a given scale and precision ([`unscaled_be_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtScaleError {
    /// Not a plain decimal number (`-12.34`, `5`, `.5`; no exponent, no spaces).
    #[error("expected a plain decimal number like \"12.34\"")]
    NotPlain,
    /// More digits after the point than the scale (zeros past it are no digits).
    #[error("more than {scale} digits after the decimal point")]
    TooFine {
        /// The scale asked for.
        scale: usize,
    },
    /// The unscaled value at the scale has more digits than the precision.
    #[error("{digits} digits exceed the precision of {precision}")]
    TooManyDigits {
        /// Digits of the unscaled value.
        digits: usize,
        /// The precision.
        precision: usize,
    },
    /// A scale past [`MAX_SCALE`].
    #[error("scale {scale} is larger than any decimal column's (at most {MAX_SCALE})")]
    ScaleTooLarge {
        /// The scale asked for.
        scale: usize,
    },
}

/// The unscaled value at `scale` of plain decimal text (`-12.34`, `+5`, `.5`, `5.`; no exponent),
/// as its shortest big-endian two's complement bytes (Avro's `decimal`; any width), when it has
/// no digit past the scale other than zeros and at most `precision` digits. The digits are
/// counted before any number is built, so a long text costs its length and nothing more.
///
/// The inverse of [`text_from_be_bytes`]: `unscaled_be_bytes(&text_from_be_bytes(b, s), s, p)`
/// is `b` in its shortest form, for any `b` of at most `p` digits.
pub fn unscaled_be_bytes(text: &str, scale: usize, precision: usize) -> Result<Vec<u8>, AtScaleError> {
    if scale > MAX_SCALE as usize {
        return Err(AtScaleError::ScaleTooLarge { scale });
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(AtScaleError::NotPlain);
    }
    let (kept, past) = fraction.split_at(fraction.len().min(scale));
    if past.bytes().any(|b| b != b'0') {
        return Err(AtScaleError::TooFine { scale });
    }
    // The unscaled value's digits: the whole part, the fraction up to the scale, zeros to it.
    let mut unscaled = String::with_capacity(whole.len() + scale);
    unscaled.push_str(whole);
    unscaled.push_str(kept);
    unscaled.extend(std::iter::repeat_n('0', scale - kept.len()));
    let significant = unscaled.trim_start_matches('0');
    let count = significant.len().max(1);
    if count > precision {
        return Err(AtScaleError::TooManyDigits { digits: count, precision });
    }
    if count <= 38 {
        // At most 38 digits: below 10^38 < 2^127.
        let magnitude: i128 = significant.parse().unwrap_or(0);
        return Ok(Decimal::integer(if negative { -magnitude } else { magnitude }).to_be_bytes());
    }
    let magnitude = BigInt::parse_bytes(significant.as_bytes(), 10).unwrap_or_default();
    Ok(if negative { -magnitude } else { magnitude }.to_signed_bytes_be())
}

fn too_fine(scale: i64) -> String {
    format!("scale {scale} is larger than any decimal column's (at most {MAX_SCALE})")
}

/// Standard base64 with padding, as Kafka's JsonConverter writes bytes.
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| format!("{text:?} is not base64"))
}

#[cfg(test)]
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(unscaled: i128, scale: u32) -> Decimal {
        Decimal { unscaled, scale }
    }

    #[test]
    fn text() {
        assert_eq!(dec(12345, 2).to_string(), "123.45");
        assert_eq!(dec(-5, 2).to_string(), "-0.05");
        assert_eq!(dec(10000, 2).to_string(), "100.00");
        assert_eq!(dec(-7, 0).to_string(), "-7");
        assert_eq!(dec(i128::MIN, 38).to_string(), "-1.70141183460469231731687303715884105728");
        assert_eq!(Decimal::parse("123.4"), Ok(dec(1234, 1)));
        assert_eq!(Decimal::parse("-.5"), Ok(dec(-5, 1)));
        assert_eq!(Decimal::parse("1.5E-2"), Ok(dec(15, 3)));
        assert_eq!(Decimal::parse("2e3"), Ok(dec(2000, 0)));
        assert!(Decimal::parse("12,5").is_err());
        assert!(Decimal::parse("").is_err());
        assert!(Decimal::parse("NaN").is_err());
    }

    #[test]
    fn rescaling_is_exact_or_refused() {
        assert_eq!(dec(1234, 1).rescale(2), Ok(dec(12340, 2)));
        assert_eq!(dec(12300, 3).rescale(1), Ok(dec(123, 1)));
        assert_eq!(dec(1234, 3).rescale(2), Err("1.234 has more than 2 digits after the point".to_owned()));
        assert!(dec(i128::MAX, 0).rescale(1).is_err());
        assert_eq!(dec(0, 0).rescale(60), Ok(dec(0, 60)));
    }

    #[test]
    fn bytes_and_negative_scales() {
        assert_eq!(Decimal::from_be_bytes(&[0x30, 0x39], 2), Ok(dec(12345, 2)));
        assert_eq!(Decimal::from_be_bytes(&[0xcf, 0xc7], 2), Ok(dec(-12345, 2)));
        assert_eq!(Decimal::from_be_bytes(&[0x00, 0x00, 0x80], 0), Ok(dec(128, 0)));
        assert_eq!(Decimal::from_be_bytes(&[0xff; 20], 0), Ok(dec(-1, 0)), "redundant sign bytes");
        assert!(Decimal::from_be_bytes(&[0x01; 17], 0).is_err());
        assert!(Decimal::from_be_bytes(&[], 0).is_err());
        assert_eq!(Decimal::from_be_bytes(&[0x05], -2), Ok(dec(500, 0)));
    }

    #[test]
    fn scales_past_postgresql_are_refused() {
        let err = "scale 147490424 is larger than any decimal column's (at most 16383)";
        assert_eq!(Decimal::from_be_bytes(&[0x30, 0x39], 147_490_424), Err(err.to_owned()));
        assert!(Decimal::new(1, i64::from(u32::MAX) + 1).is_err());
        assert!(Decimal::parse("1e-99999999").is_err());
        assert_eq!(
            dec(0, 0).rescale(MAX_SCALE + 1),
            Err("scale 16384 is larger than any decimal column's (at most 16383)".to_owned())
        );
        assert_eq!(Decimal::new(7, i64::from(MAX_SCALE)).map(|d| d.to_string().len()), Ok(2 + 16_383));
        // Display is total even for a decimal made by hand past the limit.
        assert_eq!(dec(-5, 70_000).to_string().len(), 70_003);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("MDk="), Ok(vec![0x30, 0x39]));
        assert_eq!(base64_decode(""), Ok(vec![]));
        assert_eq!(base64_decode("AQID"), Ok(vec![1, 2, 3]));
        assert!(base64_decode("MDk").is_err());
        assert!(base64_decode("M$k=").is_err());
        assert_eq!(base64_encode(&[0x30, 0x39]), "MDk=");
    }

    #[test]
    fn text_of_any_width() {
        let text = |bytes: &[u8], scale| text_from_be_bytes(bytes, scale);
        assert_eq!(text(&[0x0a, 0x4b], 2), "26.35");
        assert_eq!(text(&[0xce], 2), "-0.50");
        assert_eq!(text(&[0x04, 0xb0], 2), "12.00");
        assert_eq!(text(&[0x07], 0), "7");
        assert_eq!(text(&[0xff; 32], 3), "-0.001", "sign bytes of a widened value");
        assert_eq!(text(&[], 2), "0.00");
        // 2^255 - 1 at scale 6: past 128 bits.
        let mut max = vec![0xff; 32];
        max[0] = 0x7f;
        let digits = "57896044618658097711785492504343953926634992332820282019728792003956564819967";
        assert_eq!(text(&max, 6), format!("{}.{}", &digits[..digits.len() - 6], &digits[digits.len() - 6..]));
        assert_eq!(text(&[0x30, 0x39], 20_000), "12345E-20000");
        assert_eq!(Decimal::parse("12345E-20000").map(|_| ()), Err(too_fine(20_000)), "read back, refused");
    }

    #[test]
    fn unscaled_at_a_scale() {
        let at = |text: &str, scale, precision| unscaled_be_bytes(text, scale, precision);
        assert_eq!(at("26.35", 2, 9), Ok(vec![0x0a, 0x4b]));
        assert_eq!(at("-0.5", 2, 3), Ok(vec![0xce]));
        assert_eq!(at("+.5", 2, 3), Ok(vec![0x32]));
        assert_eq!(at("12.", 0, 2), Ok(vec![0x0c]));
        assert_eq!(at("1.230", 2, 3), Ok(vec![0x7b]), "zeros past the scale are no digits");
        assert_eq!(at("-0.00", 2, 1), Ok(vec![0x00]));
        assert_eq!(at("0001.5", 1, 2), Ok(vec![0x0f]), "leading zeros are no digits");
        assert_eq!(at("1.234", 2, 9), Err(AtScaleError::TooFine { scale: 2 }));
        assert_eq!(at("12345", 0, 4), Err(AtScaleError::TooManyDigits { digits: 5, precision: 4 }));
        assert_eq!(at("1", 2, 2), Err(AtScaleError::TooManyDigits { digits: 3, precision: 2 }));
        for bad in ["", "-", ".", "1e3", "1,5", " 1", "1.2.3", "NaN", "--1"] {
            assert_eq!(at(bad, 2, 9), Err(AtScaleError::NotPlain), "{bad:?}");
        }
        assert_eq!(at("1", 16_384, 99_999), Err(AtScaleError::ScaleTooLarge { scale: 16_384 }));
        assert_eq!(AtScaleError::TooFine { scale: 2 }.to_string(), "more than 2 digits after the decimal point");
        // Past 128 bits: 10^40 - 1 and its negative.
        let nines = "9".repeat(40);
        let big = at(&nines, 0, 40).expect("40 digits");
        assert_eq!(BigInt::from_signed_bytes_be(&big).to_string(), nines);
        let negative = at(&format!("-{nines}"), 0, 40).expect("40 digits");
        assert_eq!(text_from_be_bytes(&negative, 0), format!("-{nines}"));
        // A long text is refused by its count, not by building its number.
        assert!(matches!(at(&"7".repeat(1_000_000), 0, 76), Err(AtScaleError::TooManyDigits { .. })));
    }

    proptest! {
        /// Decimal text read back at its scale is the same value, at any width (up to 40 bytes:
        /// past `Decimal256`) and scale, in the shortest bytes.
        #[test]
        fn text_and_bytes_roundtrip(bytes in proptest::collection::vec(any::<u8>(), 1..40), scale in 0usize..80) {
            let text = text_from_be_bytes(&bytes, scale);
            let value = BigInt::from_signed_bytes_be(&bytes);
            let digits = value.magnitude().to_string().len();
            prop_assert_eq!(unscaled_be_bytes(&text, scale, digits), Ok(value.to_signed_bytes_be()), "{}", text);
            let after_point = text.split_once('.').map_or(0, |(_, fraction)| fraction.len());
            prop_assert_eq!(after_point, scale, "exactly the scale's digits after the point: {}", text);
            if digits > 1 {
                prop_assert!(unscaled_be_bytes(&text, scale, digits - 1).is_err());
            }
        }

        /// Any unscaled value at any scale survives bytes → base64 → decimal → text → decimal,
        /// and rescaling up then back down.
        #[test]
        fn decimals_roundtrip(unscaled in any::<i128>(), scale in 0u32..=38, up in 0u32..4) {
            let bytes = Decimal { unscaled, scale: 0 }.to_be_bytes();
            let read = Decimal::from_be_bytes(&base64_decode(&base64_encode(&bytes)).expect("base64"), i64::from(scale));
            prop_assert_eq!(read, Ok(dec(unscaled, scale)));
            let text = dec(unscaled, scale).to_string();
            prop_assert_eq!(Decimal::parse(&text).and_then(|d| d.rescale(scale)), Ok(dec(unscaled, scale)));
            if let Ok(wider) = dec(unscaled, scale).rescale(scale + up) {
                prop_assert_eq!(wider.rescale(scale), Ok(dec(unscaled, scale)));
                prop_assert_eq!(Decimal::parse(&wider.to_string()).map(|d| d.to_string()), Ok(wider.to_string()));
            }
        }
    }
}
