//! FHIR R4 `GET /fhir/Observation?patient=…&date=ge…`: a searchset Bundle of
//! vital-signs Observations (LOINC codes, UCUM units), so shared care
//! records can read what wardwatch holds.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use wardwatch_core::Vital;
use wardwatch_store::prelude::*;
use wardwatch_store::views::ReadingRow;

use crate::{patient_in_reach, record, refuse, store_error, ApiState, Caller, Problem};

/// One `date` search parameter: a prefix and an instant.
fn parse_date(v: &str) -> Result<(&str, DateTime<Utc>), String> {
    let (prefix, rest) = match v.get(..2) {
        Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &v[2..]),
        _ => ("eq", v),
    };
    DateTime::parse_from_rfc3339(rest)
        .map(|t| (prefix, t.with_timezone(&Utc)))
        .map_err(|_| format!("date {v:?} must be [ge|gt|le|lt]<RFC 3339 instant>"))
}

fn observation(base: &str, patient: &str, r: &ReadingRow) -> Option<serde_json::Value> {
    let vital = Vital::from_name(&r.vital)?;
    let loinc = vital.loinc_codes().first()?;
    let id = format!("{patient}-{}-{}", r.vital, r.time.timestamp_micros());
    let mut obs = serde_json::json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}], "text": r.vital},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": r.time.to_rfc3339(),
        "device": {"display": r.device_id},
    });
    match vital.canonical_unit() {
        Some(unit) => {
            obs["valueQuantity"] = serde_json::json!({
                "value": r.value, "unit": unit,
                "system": "http://unitsofmeasure.org", "code": unit});
        }
        None if vital == Vital::Consciousness => {
            let letter = ["A", "C", "V", "P", "U"]
                .get(r.value.round().max(0.0) as usize)
                .copied()
                .unwrap_or("A");
            obs["valueString"] = serde_json::json!(letter);
        }
        None => return None,
    }
    Some(
        serde_json::json!({"fullUrl": format!("{base}/fhir/Observation/{id}"), "resource": obs,
        "search": {"mode": "match"}}),
    )
}

/// `GET /fhir/Observation?patient=ID[&date=geT][&date=ltT]`.
pub(crate) async fn search_observations(
    State(state): State<ApiState>,
    c: Caller,
    headers: axum::http::HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let mut patient = None;
    let mut count: i64 = 1000;
    let mut cursor = None;
    let mut dates: Vec<&str> = Vec::new();
    let mut from = wardwatch_core::clock::engine::now() - chrono::Duration::days(7);
    let mut to = wardwatch_core::clock::engine::now() + chrono::Duration::minutes(10);
    for (k, v) in &params {
        match k.as_str() {
            "patient" => patient = Some(v.trim_start_matches("Patient/").to_string()),
            "_count" => match v.parse::<i64>() {
                Ok(n) if (1..=10_000).contains(&n) => count = n,
                _ => {
                    return refuse(
                        &state,
                        &c,
                        None,
                        Problem::bad_request("_count must be between 1 and 10000"),
                    )
                    .await
                }
            },
            "_cursor" => match crate::parse_cursor(v) {
                Ok(k) => cursor = Some(k),
                Err(p) => return refuse(&state, &c, None, p).await,
            },
            "date" => match parse_date(v) {
                Ok(("ge" | "gt", t)) => {
                    dates.push(v);
                    from = t
                }
                Ok(("le" | "lt", t)) => {
                    dates.push(v);
                    to = t
                }
                Ok((_, t)) => {
                    dates.push(v);
                    from = t;
                    to = t + chrono::Duration::microseconds(1);
                }
                Err(e) => return refuse(&state, &c, None, Problem::bad_request(&e)).await,
            },
            other => {
                return refuse(
                    &state,
                    &c,
                    None,
                    Problem::bad_request(&format!(
                        "unsupported search parameter {other:?}: patient, date, _count and _cursor are supported"
                    )),
                )
                .await
            }
        }
    }
    let Some(patient) = patient else {
        return refuse(
            &state,
            &c,
            None,
            Problem::bad_request("the patient parameter is required"),
        )
        .await;
    };
    let p = match patient_in_reach(&state, &c, &patient).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if from >= to {
        return refuse(
            &state,
            &c,
            None,
            Problem::bad_request("the date range is empty"),
        )
        .await;
    }
    // One more than asked: whether a next page exists.
    let mut rows = match state
        .store
        .readings_page(&p.id, None, from, to, cursor.as_ref(), count + 1)
        .await
    {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let more = rows.len() as i64 > count;
    rows.truncate(usize::try_from(count).unwrap_or(0));
    if let Err(r) = record(&state, &c, Some(&p.id), StatusCode::OK).await {
        return r;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("http://{host}");
    let entries: Vec<_> = rows
        .iter()
        .filter_map(|r| observation(&base, &p.id, r))
        .collect();
    let mut links =
        vec![serde_json::json!({"relation": "self", "url": format!("{base}{}", c.uri)})];
    if let Some(last) = rows.last().filter(|_| more) {
        let mut url = format!(
            "{base}/fhir/Observation?patient={}&_count={count}&_cursor={}",
            crate::query_value(&p.id),
            crate::query_value(&crate::page_cursor(last))
        );
        for d in &dates {
            url.push_str(&format!("&date={}", crate::query_value(d)));
        }
        links.push(serde_json::json!({"relation": "next", "url": url}));
    }
    let mut bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    });
    // The total is known only when the search fits in this one page.
    if !more && cursor.is_none() {
        bundle["total"] = serde_json::json!(entries.len());
    }
    (
        [(header::CONTENT_TYPE, "application/fhir+json")],
        bundle.to_string(),
    )
        .into_response()
}
