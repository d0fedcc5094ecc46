//! The PHI categories of HIPAA Safe Harbor, as used in every output of phigate.

use std::fmt;
use std::str::FromStr;

/// One Safe Harbor identifier category. The string form (`NAME`, `LOCATION`, …) is the
/// `category` field of every JSON output and is stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// Names of patients, relatives, clinicians.
    Name,
    /// Street, city, county, ZIP code, facility or hospital.
    Location,
    /// Any date element but the year.
    Date,
    /// Ages over 89.
    Age,
    /// Telephone and pager numbers.
    Phone,
    /// Fax numbers.
    Fax,
    /// Email addresses.
    Email,
    /// Social Security numbers.
    Ssn,
    /// Medical record numbers.
    Mrn,
    /// Health plan beneficiary numbers.
    HealthPlan,
    /// Account numbers.
    Account,
    /// Certificate and license numbers (DEA, NPI, driver's licences).
    License,
    /// Vehicle identifiers and serial numbers, licence plates.
    Vehicle,
    /// Device identifiers and serial numbers.
    Device,
    /// Web URLs.
    Url,
    /// IP addresses.
    Ip,
    /// Biometric identifiers.
    Biometric,
    /// Any other unique identifying number, characteristic or code.
    Id,
}

impl Category {
    /// Every category, in a stable order.
    pub const ALL: [Category; 18] = [
        Category::Name,
        Category::Location,
        Category::Date,
        Category::Age,
        Category::Phone,
        Category::Fax,
        Category::Email,
        Category::Ssn,
        Category::Mrn,
        Category::HealthPlan,
        Category::Account,
        Category::License,
        Category::Vehicle,
        Category::Device,
        Category::Url,
        Category::Ip,
        Category::Biometric,
        Category::Id,
    ];

    /// The stable upper-case name (`NAME`, `HEALTH_PLAN`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Name => "NAME",
            Category::Location => "LOCATION",
            Category::Date => "DATE",
            Category::Age => "AGE",
            Category::Phone => "PHONE",
            Category::Fax => "FAX",
            Category::Email => "EMAIL",
            Category::Ssn => "SSN",
            Category::Mrn => "MRN",
            Category::HealthPlan => "HEALTH_PLAN",
            Category::Account => "ACCOUNT",
            Category::License => "LICENSE",
            Category::Vehicle => "VEHICLE",
            Category::Device => "DEVICE",
            Category::Url => "URL",
            Category::Ip => "IP",
            Category::Biometric => "BIOMETRIC",
            Category::Id => "ID",
        }
    }

    /// A small dense index (0..18), for per-category counters.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PHI category {0:?} (expected one of NAME, LOCATION, DATE, AGE, PHONE, FAX, EMAIL, SSN, MRN, HEALTH_PLAN, ACCOUNT, LICENSE, VEHICLE, DEVICE, URL, IP, BIOMETRIC, ID)")]
pub struct UnknownCategory(pub String);

impl FromStr for Category {
    type Err = UnknownCategory;

    /// Parses the stable name, case-insensitively. Common aliases used by other tools'
    /// gold data (`PERSON`, `GEOGRAPHIC_LOCATION`, `MEDICAL_RECORD_NUMBER`, …) are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        let c = match up.as_str() {
            "NAME" | "PERSON" | "PATIENT" | "DOCTOR" | "STAFF" | "USERNAME" => Category::Name,
            "LOCATION"
            | "GEOGRAPHIC_LOCATION"
            | "GPE"
            | "STREET_ADDRESS"
            | "ZIP_CODE"
            | "ADDRESS"
            | "HOSPITAL"
            | "CITY"
            | "STATE"
            | "ZIP"
            | "FACILITY"
            | "LOC" => Category::Location,
            "DATE" | "DATE_TIME" => Category::Date,
            "AGE" => Category::Age,
            "PHONE" | "PHONE_NUMBER" | "TELEPHONE" | "PAGER" => Category::Phone,
            "FAX" | "FAX_NUMBER" => Category::Fax,
            "EMAIL" | "EMAIL_ADDRESS" => Category::Email,
            "SSN" | "US_SSN" | "SOCIAL_SECURITY_NUMBER" => Category::Ssn,
            "MRN" | "MEDICAL_RECORD_NUMBER" | "MEDICALRECORD" => Category::Mrn,
            "HEALTH_PLAN" | "HEALTH_PLAN_BENEFICIARY_NUMBER" | "HEALTHPLAN" => Category::HealthPlan,
            "ACCOUNT" | "ACCOUNT_NUMBER" | "CREDIT_CARD" | "IBAN_CODE" | "US_BANK_NUMBER" => {
                Category::Account
            }
            "LICENSE" | "LICENSE_NUMBER" | "US_DRIVER_LICENSE" | "CERTIFICATE" | "DEA" | "NPI" => {
                Category::License
            }
            "VEHICLE" | "VEHICLE_ID" | "VIN" | "LICENSE_PLATE" => Category::Vehicle,
            "DEVICE" | "DEVICE_ID" | "SERIAL" => Category::Device,
            "URL" | "DOMAIN_NAME" | "WEB_URL" => Category::Url,
            "IP" | "IP_ADDRESS" => Category::Ip,
            "BIOMETRIC" | "BIOID" => Category::Biometric,
            "ID" | "UNIQUE_IDENTIFIER" | "IDNUM" | "OTHER_ID" => Category::Id,
            _ => return Err(UnknownCategory(s.to_string())),
        };
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
            assert_eq!(Category::ALL[c.index()], c);
        }
        assert_eq!("GEOGRAPHIC_LOCATION".parse::<Category>().unwrap(), Category::Location);
        assert!("NOPE".parse::<Category>().is_err());
    }
}
