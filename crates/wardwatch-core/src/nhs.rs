//! The NHS number: ten digits, the last a modulus-11 check digit. Checking
//! it at enrolment catches the typos (a swapped or mistyped digit) that
//! would otherwise attach one person's readings to another's record.

use std::fmt;

use thiserror::Error;

/// Why a string is not a valid NHS number.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NhsNumberError {
    /// Not ten digits (spaces and hyphens between groups are allowed).
    #[error("an NHS number has 10 digits (spaces or hyphens allowed between groups)")]
    Shape,
    /// The weighted sum gives 10, which no valid NHS number has.
    #[error("{0} is not a valid NHS number: its digits give no valid check digit")]
    NoCheckDigit(String),
    /// The last digit does not match the modulus-11 check of the first nine.
    #[error("{0} is not a valid NHS number: check digit mismatch (a digit is mistyped?)")]
    CheckDigit(String),
}

/// A checked NHS number, stored as its ten digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Parses `"943 476 5919"`, `"943-476-5919"` or `"9434765919"`.
    pub fn parse(s: &str) -> Result<Self, NhsNumberError> {
        let digits: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
        if digits.len() != 10 || d.len() != 10 {
            return Err(NhsNumberError::Shape);
        }
        // Weights 10 down to 2 on the first nine digits.
        let sum: u32 = d
            .iter()
            .take(9)
            .zip((2..=10).rev())
            .map(|(a, w)| a * w)
            .sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err(NhsNumberError::NoCheckDigit(digits)),
            c => c,
        };
        if d.get(9) != Some(&check) {
            return Err(NhsNumberError::CheckDigit(digits));
        }
        Ok(Self(digits))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NhsNumber {
    /// Written the way people read it: 3-3-4.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, rest) = self.0.split_at(3);
        let (b, c) = rest.split_at(3);
        write!(f, "{a} {b} {c}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_in_any_grouping() {
        for s in ["9434765919", "943 476 5919", "943-476-5919", " 4010232137 "] {
            assert!(NhsNumber::parse(s).is_ok(), "{s}");
        }
        assert_eq!(
            NhsNumber::parse("943 476 5919").unwrap().as_str(),
            "9434765919"
        );
        assert_eq!(
            NhsNumber::parse("9434765919").unwrap().to_string(),
            "943 476 5919"
        );
    }

    #[test]
    fn a_remainder_of_zero_makes_the_check_digit_zero() {
        // Nine zeros sum to 0: 11 - 0 = 11, which means check digit 0.
        assert!(NhsNumber::parse("0000000000").is_ok());
        assert_eq!(
            NhsNumber::parse("0000000001"),
            Err(NhsNumberError::CheckDigit("0000000001".into()))
        );
    }

    #[test]
    fn a_check_of_ten_is_never_valid() {
        // 1·10 + 1·2 = 12 ≡ 1 (mod 11): 11 - 1 = 10, no digit fits.
        for last in 0..=9 {
            let s = format!("100000001{last}");
            assert_eq!(
                NhsNumber::parse(&s),
                Err(NhsNumberError::NoCheckDigit(s.clone())),
                "{s}"
            );
        }
    }

    #[test]
    fn a_single_mistyped_or_swapped_digit_is_caught() {
        assert!(matches!(
            NhsNumber::parse("9434765918"),
            Err(NhsNumberError::CheckDigit(_))
        ));
        // Adjacent transposition of the 2nd and 3rd digits.
        assert!(NhsNumber::parse("9344765919").is_err());
    }

    #[test]
    fn wrong_shapes_are_refused() {
        for s in ["", "943476591", "94347659190", "94347659a9", "943.476.5919"] {
            assert_eq!(NhsNumber::parse(s), Err(NhsNumberError::Shape), "{s}");
        }
    }
}
