//! The device contract's topics: `wardwatch/v1/devices/{device_id}/readings`
//! (SenML) and `.../observations` (FHIR). The topic's device id is the
//! identity; the payload's own names are kept only for diagnosis.

use wardwatch_core::{DeviceId, IdError};

use crate::decode::PayloadFormat;

/// Why a topic is not one of ours.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    /// Not `wardwatch/v1/devices/{id}/readings|observations`.
    #[error("topic {0:?} is not wardwatch/v1/devices/{{device_id}}/readings or /observations")]
    Shape(String),
    /// The id segment is not a valid device id.
    #[error("topic device id: {0}")]
    Id(#[from] IdError),
}

/// Splits a topic into the device it names and the payload format it carries.
pub fn parse(topic: &str) -> Result<(DeviceId, PayloadFormat), TopicError> {
    let mut parts = topic.split('/');
    let (Some("wardwatch"), Some("v1"), Some("devices"), Some(id), Some(kind), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TopicError::Shape(topic.to_string()));
    };
    let format = match kind {
        "readings" => PayloadFormat::Senml,
        "observations" => PayloadFormat::Fhir,
        _ => return Err(TopicError::Shape(topic.to_string())),
    };
    Ok((DeviceId::new(id)?, format))
}

/// The raw device segment of a topic, for quarantine rows of unparseable topics.
pub fn raw_device_segment(topic: &str) -> Option<&str> {
    topic.split('/').nth(3)
}

/// The topic a device publishes SenML to.
pub fn readings_topic(device: &DeviceId) -> String {
    format!("wardwatch/v1/devices/{device}/readings")
}

/// The topic a device publishes FHIR to.
pub fn observations_topic(device: &DeviceId) -> String {
    format!("wardwatch/v1/devices/{device}/observations")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_topics_name_the_device_and_the_format() {
        let (d, f) = parse("wardwatch/v1/devices/ox-1/readings").unwrap();
        assert_eq!(d.as_str(), "ox-1");
        assert_eq!(f, PayloadFormat::Senml);
        let (_, f) = parse("wardwatch/v1/devices/bp-9/observations").unwrap();
        assert_eq!(f, PayloadFormat::Fhir);
        assert_eq!(readings_topic(&d), "wardwatch/v1/devices/ox-1/readings");
    }

    #[test]
    fn other_topics_are_refused() {
        assert!(parse("wardwatch/v1/devices/ox-1/other").is_err());
        assert!(parse("wardwatch/v1/devices/ox-1/readings/x").is_err());
        assert!(parse("wardwatch/v2/devices/ox-1/readings").is_err());
        assert!(matches!(
            parse("wardwatch/v1/devices/bad id/readings"),
            Err(TopicError::Id(_))
        ));
        assert_eq!(
            raw_device_segment("wardwatch/v1/devices/bad id/readings"),
            Some("bad id")
        );
    }
}
