//! A request decoded from JSON, encoded as protobuf for the one translator
//! ([`super::translate()`]), with nothing lost on the way: prost leaves out
//! proto3 scalars at their default, and for doubles that drops the sign of
//! -0.0, which translation writes (a summary's `_sum`, its `quantile`
//! labels and values). Those are written explicitly after prost's encoding
//! of their message (the last occurrence of a scalar wins); everything
//! else is prost's encoding.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, summary_data_point::ValueAtQuantile, Metric, ResourceMetrics, ScopeMetrics,
    SummaryDataPoint,
};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

/// A length-delimited field holding `body`.
fn put_message(tag: u32, body: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// A double field, written even when it is -0.0.
fn put_negative_zero(tag: u32, v: f64, out: &mut Vec<u8>) {
    if v == 0.0 && v.is_sign_negative() {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Encodes `req` as prost does, keeping -0.0 where translation reads it.
pub fn encode(req: ExportMetricsServiceRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.encoded_len());
    for rm in req.resource_metrics {
        put_message(1, &resource_metrics(rm), &mut out);
    }
    out
}

fn resource_metrics(mut rm: ResourceMetrics) -> Vec<u8> {
    let scopes = std::mem::take(&mut rm.scope_metrics);
    let mut out = rm.encode_to_vec();
    for sm in scopes {
        put_message(2, &scope_metrics(sm), &mut out);
    }
    out
}

fn scope_metrics(mut sm: ScopeMetrics) -> Vec<u8> {
    let metrics = std::mem::take(&mut sm.metrics);
    let mut out = sm.encode_to_vec();
    for m in metrics {
        put_message(2, &metric(m), &mut out);
    }
    out
}

fn metric(mut m: Metric) -> Vec<u8> {
    if !matches!(m.data, Some(Data::Summary(_))) {
        return m.encode_to_vec();
    }
    let Some(Data::Summary(summary)) = m.data.take() else {
        return m.encode_to_vec();
    };
    let mut out = m.encode_to_vec();
    let mut body = Vec::new();
    for p in summary.data_points {
        put_message(1, &summary_point(p), &mut body);
    }
    // An empty summary is still a summary.
    put_message(11, &body, &mut out);
    out
}

fn summary_point(mut p: SummaryDataPoint) -> Vec<u8> {
    let quantiles = std::mem::take(&mut p.quantile_values);
    let mut out = p.encode_to_vec();
    for q in quantiles {
        put_message(6, &value_at_quantile(&q), &mut out);
    }
    put_negative_zero(5, p.sum, &mut out);
    out
}

fn value_at_quantile(q: &ValueAtQuantile) -> Vec<u8> {
    let mut out = q.encode_to_vec();
    put_negative_zero(1, q.quantile, &mut out);
    put_negative_zero(2, q.value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Summary};

    #[test]
    fn same_as_prost_but_negative_zeros() {
        let q = |quantile, value| ValueAtQuantile { quantile, value };
        let mut req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "s".into(),
                            data: Some(Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    sum: 2.0,
                                    quantile_values: vec![q(0.5, 1.0), q(0.0, 0.0)],
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "empty".into(),
                            data: Some(Data::Summary(Summary::default())),
                            ..Default::default()
                        },
                        Metric {
                            name: "none".into(),
                            ..Default::default()
                        },
                        Metric {
                            name: "g".into(),
                            data: Some(Data::Gauge(Gauge::default())),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(encode(req.clone()), req.encode_to_vec());
        let Some(Data::Summary(s)) = &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            unreachable!()
        };
        s.data_points[0].sum = -0.0;
        s.data_points[0].quantile_values[1] = q(-0.0, -0.0);
        let again = ExportMetricsServiceRequest::decode(&encode(req.clone())[..]).unwrap();
        let Some(Data::Summary(s)) = &again.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            unreachable!()
        };
        assert!(s.data_points[0].sum.is_sign_negative());
        let last = &s.data_points[0].quantile_values[1];
        assert!(last.quantile.is_sign_negative() && last.value.is_sign_negative());
        assert_eq!(again, req);
    }
}
