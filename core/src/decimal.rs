//! Exact decimal numbers, the one codec of them: Avro decimals (the unscaled value's big-endian
//! two's complement), Debezium's `numeric` columns (those bytes in base64, decimal text, or a
//! double), users' JSON (`"12.34"`), and the text analysts read. Pure code.

use std::fmt;

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
        let digits = self.unscaled.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let sign = if self.unscaled < 0 { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        // Zeros in front up to one digit before the point (no `{:0>width$}`: a width past u16::MAX
        // panics, and `scale` is only bounded where a decimal is made).
        let padded = "0".repeat((scale + 1).saturating_sub(digits.len())) + &digits;
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{whole}.{fraction}")
    }
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

    proptest! {
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
