//! The field layout of every OTLP metrics message, for checking in place
//! the parts of a request that translation does not read (exemplars,
//! scope attributes, exponential histograms, rejected points, …): a request
//! is refused if any part of it would fail prost's decoding of the
//! generated types, read or not. Field numbers and types are those of
//! `opentelemetry-proto`'s generated code (OTLP 1.x).

use super::wire::{Reader, WireError};

/// How a field is encoded.
#[derive(Debug)]
pub enum Kind {
    /// `int32`, `int64`, `uint32`, `uint64`, `sint32`, `bool`, enums.
    Varint,
    /// `fixed64`, `sfixed64`, `double`.
    Fixed64,
    /// `string`: UTF-8 checked.
    Str,
    Bytes,
    Message(&'static Schema),
    /// Repeated varints, packed or not.
    Varints,
    /// Repeated `fixed64`/`double`, packed or not.
    Fixed64s,
}

/// A message: its name (for errors) and known fields; any other field is
/// skipped.
#[derive(Debug)]
pub struct Schema {
    pub name: &'static str,
    pub fields: &'static [(u32, Kind)],
}

pub static ANY_VALUE: Schema = Schema {
    name: "AnyValue",
    fields: &[
        (1, Kind::Str),
        (2, Kind::Varint),
        (3, Kind::Varint),
        (4, Kind::Fixed64),
        (5, Kind::Message(&ARRAY_VALUE)),
        (6, Kind::Message(&KEY_VALUE_LIST)),
        (7, Kind::Bytes),
        (8, Kind::Varint),
    ],
};

pub static ARRAY_VALUE: Schema = Schema {
    name: "ArrayValue",
    fields: &[(1, Kind::Message(&ANY_VALUE))],
};

pub static KEY_VALUE_LIST: Schema = Schema {
    name: "KeyValueList",
    fields: &[(1, Kind::Message(&KEY_VALUE))],
};

pub static KEY_VALUE: Schema = Schema {
    name: "KeyValue",
    fields: &[
        (1, Kind::Str),
        (2, Kind::Message(&ANY_VALUE)),
        (3, Kind::Varint),
    ],
};

pub static ENTITY_REF: Schema = Schema {
    name: "EntityRef",
    fields: &[
        (1, Kind::Str),
        (2, Kind::Str),
        (3, Kind::Str),
        (4, Kind::Str),
    ],
};

pub static INSTRUMENTATION_SCOPE: Schema = Schema {
    name: "InstrumentationScope",
    fields: &[
        (1, Kind::Str),
        (2, Kind::Str),
        (3, Kind::Message(&KEY_VALUE)),
        (4, Kind::Varint),
    ],
};

pub static RESOURCE: Schema = Schema {
    name: "Resource",
    fields: &[
        (1, Kind::Message(&KEY_VALUE)),
        (2, Kind::Varint),
        (3, Kind::Message(&ENTITY_REF)),
    ],
};

pub static EXEMPLAR: Schema = Schema {
    name: "Exemplar",
    fields: &[
        (2, Kind::Fixed64),
        (3, Kind::Fixed64),
        (4, Kind::Bytes),
        (5, Kind::Bytes),
        (6, Kind::Fixed64),
        (7, Kind::Message(&KEY_VALUE)),
    ],
};

pub static NUMBER_DATA_POINT: Schema = Schema {
    name: "NumberDataPoint",
    fields: &[
        (2, Kind::Fixed64),
        (3, Kind::Fixed64),
        (4, Kind::Fixed64),
        (5, Kind::Message(&EXEMPLAR)),
        (6, Kind::Fixed64),
        (7, Kind::Message(&KEY_VALUE)),
        (8, Kind::Varint),
    ],
};

pub static HISTOGRAM_DATA_POINT: Schema = Schema {
    name: "HistogramDataPoint",
    fields: &[
        (2, Kind::Fixed64),
        (3, Kind::Fixed64),
        (4, Kind::Fixed64),
        (5, Kind::Fixed64),
        (6, Kind::Fixed64s),
        (7, Kind::Fixed64s),
        (8, Kind::Message(&EXEMPLAR)),
        (9, Kind::Message(&KEY_VALUE)),
        (10, Kind::Varint),
        (11, Kind::Fixed64),
        (12, Kind::Fixed64),
    ],
};

pub static BUCKETS: Schema = Schema {
    name: "Buckets",
    fields: &[(1, Kind::Varint), (2, Kind::Varints)],
};

pub static EXPONENTIAL_HISTOGRAM_DATA_POINT: Schema = Schema {
    name: "ExponentialHistogramDataPoint",
    fields: &[
        (1, Kind::Message(&KEY_VALUE)),
        (2, Kind::Fixed64),
        (3, Kind::Fixed64),
        (4, Kind::Fixed64),
        (5, Kind::Fixed64),
        (6, Kind::Varint),
        (7, Kind::Fixed64),
        (8, Kind::Message(&BUCKETS)),
        (9, Kind::Message(&BUCKETS)),
        (10, Kind::Varint),
        (11, Kind::Message(&EXEMPLAR)),
        (12, Kind::Fixed64),
        (13, Kind::Fixed64),
        (14, Kind::Fixed64),
    ],
};

pub static VALUE_AT_QUANTILE: Schema = Schema {
    name: "ValueAtQuantile",
    fields: &[(1, Kind::Fixed64), (2, Kind::Fixed64)],
};

pub static SUMMARY_DATA_POINT: Schema = Schema {
    name: "SummaryDataPoint",
    fields: &[
        (2, Kind::Fixed64),
        (3, Kind::Fixed64),
        (4, Kind::Fixed64),
        (5, Kind::Fixed64),
        (6, Kind::Message(&VALUE_AT_QUANTILE)),
        (7, Kind::Message(&KEY_VALUE)),
        (8, Kind::Varint),
    ],
};

pub static GAUGE: Schema = Schema {
    name: "Gauge",
    fields: &[(1, Kind::Message(&NUMBER_DATA_POINT))],
};

pub static SUM: Schema = Schema {
    name: "Sum",
    fields: &[
        (1, Kind::Message(&NUMBER_DATA_POINT)),
        (2, Kind::Varint),
        (3, Kind::Varint),
    ],
};

pub static HISTOGRAM: Schema = Schema {
    name: "Histogram",
    fields: &[(1, Kind::Message(&HISTOGRAM_DATA_POINT)), (2, Kind::Varint)],
};

pub static EXPONENTIAL_HISTOGRAM: Schema = Schema {
    name: "ExponentialHistogram",
    fields: &[
        (1, Kind::Message(&EXPONENTIAL_HISTOGRAM_DATA_POINT)),
        (2, Kind::Varint),
    ],
};

pub static SUMMARY: Schema = Schema {
    name: "Summary",
    fields: &[(1, Kind::Message(&SUMMARY_DATA_POINT))],
};

pub static METRIC: Schema = Schema {
    name: "Metric",
    fields: &[
        (1, Kind::Str),
        (2, Kind::Str),
        (3, Kind::Str),
        (5, Kind::Message(&GAUGE)),
        (7, Kind::Message(&SUM)),
        (9, Kind::Message(&HISTOGRAM)),
        (10, Kind::Message(&EXPONENTIAL_HISTOGRAM)),
        (11, Kind::Message(&SUMMARY)),
        (12, Kind::Message(&KEY_VALUE)),
    ],
};

pub static SCOPE_METRICS: Schema = Schema {
    name: "ScopeMetrics",
    fields: &[
        (1, Kind::Message(&INSTRUMENTATION_SCOPE)),
        (2, Kind::Message(&METRIC)),
        (3, Kind::Str),
    ],
};

pub static RESOURCE_METRICS: Schema = Schema {
    name: "ResourceMetrics",
    fields: &[
        (1, Kind::Message(&RESOURCE)),
        (2, Kind::Message(&SCOPE_METRICS)),
        (3, Kind::Str),
    ],
};

/// The whole request: checking a body against it reads every byte as
/// translation does, without translating (the benchmark's reading cost).
pub static EXPORT_METRICS_SERVICE_REQUEST: Schema = Schema {
    name: "ExportMetricsServiceRequest",
    fields: &[(1, Kind::Message(&RESOURCE_METRICS))],
};

/// Checks one message (`r` from its first field) and everything in it
/// against `schema`.
pub fn validate(mut r: Reader<'_>, schema: &'static Schema) -> Result<(), WireError> {
    while let Some((field, v)) = r.read_field()? {
        let Some((_, kind)) = schema.fields.iter().find(|(n, _)| *n == field) else {
            r.skip()?;
            continue;
        };
        match kind {
            Kind::Varint => drop(r.varint_of(field, v)?),
            Kind::Fixed64 => drop(r.fixed64_of(field, v)?),
            Kind::Str => drop(r.str_of(field, v)?),
            Kind::Bytes => drop(r.bytes_of(field, v)?),
            Kind::Message(inner) => validate(r.message(field, v, inner.name)?, inner)?,
            Kind::Varints => r.varints(field, v, |_| ())?,
            Kind::Fixed64s => r.fixed64s(field, v, |_| ())?,
        }
    }
    Ok(())
}

/// Checks every occurrence of a message field.
pub fn validate_all(segments: &[Reader<'_>], schema: &'static Schema) -> Result<(), WireError> {
    segments.iter().try_for_each(|r| validate(*r, schema))
}
