//! Engine tests. Expected values are worked out by hand from Prometheus'
//! semantics (see the comments); scripts use [`super::promqltest`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tidemark_storage::{
    Labels, Matcher, Queryable, Sample, SelectHints, Series, SeriesStream, StorageError,
};

use super::promqltest::{run, run_with};
use super::*;
use crate::test_store::{MemStore, StuckStore};

#[tokio::test]
async fn selectors_and_matchers() {
    run(r#"
load 1m
    http_requests{job="api", instance="0"} 0+10x10
    http_requests{job="api", instance="1"} 0+20x10
    http_requests{job="db", instance="0"} 0+30x10
    other{job="api"} 1+0x10

eval instant at 5m http_requests{job="api"}
    http_requests{job="api", instance="0"} 50
    http_requests{job="api", instance="1"} 100

eval instant at 5m http_requests{job!="api"}
    http_requests{job="db", instance="0"} 150

eval instant at 5m http_requests{job=~"a.+", instance!~"1"}
    http_requests{job="api", instance="0"} 50

# An absent label matches the empty string.
eval instant at 5m {__name__=~"http_.*|other", job="api", instance=~"0|"}
    http_requests{job="api", instance="0"} 50
    other{job="api"} 1

eval instant at 5m {__name__="other"}
    other{job="api"} 1

# Regular expressions are anchored.
eval instant at 5m http_requests{job=~"ap"}

eval instant at 5m nonexistent
"#)
    .await;
}

#[tokio::test]
async fn lookback_and_staleness() {
    run(r#"
load 10s
    metric 0 1 stale 2

eval instant at 10s metric
    metric 1

# A staleness marker ends the series at once.
eval instant at 20s metric

eval instant at 30s metric
    metric 2

# The lookback window is (t-5m, t]: the sample at 30s is seen until 329.999s.
eval instant at 329s metric
    metric 2

eval instant at 330s metric

eval range from 0 to 40s step 10s metric
    metric 0 1 _ 2 2

eval range from 300s to 340s step 10s metric
    metric 2 2 2 _ _
"#)
    .await;
}

#[tokio::test]
async fn offsets_positive_and_negative() {
    run(r#"
load 1m
    m{job="db"} 0+30x10

eval instant at 5m m offset 2m
    m{job="db"} 90

eval instant at 5m m offset -2m
    m{job="db"} 210

# The last sample (10m) is 15m before 20m+5m: out of the lookback.
eval instant at 20m m offset -5m

eval range from 0 to 20m step 5m m
    m{job="db"} 0 150 300 _ _

eval range from 0 to 10m step 5m m offset 5m
    m{job="db"} _ 0 150
"#)
    .await;
}

#[tokio::test]
async fn rate_and_increase_extrapolate_like_prometheus() {
    run(r#"
load 5m
    c_total{x="a"} 0+10x10
    c_total{x="b"} 0+20x10
    r_total 0 1 2 3 2 3 4

# Window (0, 50m]: 10 samples 10..100 from 5m to 50m. Increase 90, start
# 300s away (< 1.1 * 300s average): extrapolated to 300s, which is also
# where the counter would reach zero; end on the edge. 90 * 3000 / 2700.
eval instant at 50m increase(c_total{x="a"}[50m])
    {x="a"} 100

eval instant at 50m rate(c_total[50m])
    {x="a"} 0.03333333333333333
    {x="b"} 0.06666666666666667

# Window (-50m, 50m]: 11 samples from 0; the start is 3000s away, beyond
# the threshold, so half an interval (150s) is assumed, but the counter
# is already 0 at the first sample: no extrapolation.
eval instant at 50m increase(c_total{x="a"}[100m])
    {x="a"} 100

# Reset 3 -> 2 adds 3: 1 2 3 2 3 4 gives 3 + 3 = 6, extrapolated at the
# start by min(300s, 1500 * 1/6 = 250s): 6 * 1750 / 1500 = 7.
eval instant at 30m increase(r_total[30m])
    {} 7

# Window (35m, 45m]: 80, 90; 20 after doubling the 300s sampled interval.
eval instant at 50m rate(c_total{x="a"}[10m] offset 5m)
    {x="a"} 0.03333333333333333

eval instant at 40m increase(c_total{x="a"}[10m] offset -5m)
    {x="a"} 20

# Fewer than two samples in the window: no output.
eval instant at 50m rate(c_total[5m])

eval range from 0 to 10m step 5m rate(c_total{x="a"}[10m])
    {x="a"} _ 0.016666666666666666 0.03333333333333333
"#)
    .await;
}

#[tokio::test]
async fn rate_of_a_series_that_ends_inside_the_window() {
    run(r#"
load 1m
    g_total 0+60x3

# Samples 60 120 180 at 1m..3m in (0, 5m]: increase 120 over 120s, start
# 60s away (extrapolated; zero point also 60s away), end 120s away
# (beyond 66s: half an interval, 30s). 120 * 210 / 120 = 210.
eval instant at 5m increase(g_total[5m])
    {} 210

eval instant at 5m rate(g_total[5m])
    {} 0.7
"#)
    .await;
}

#[tokio::test]
async fn range_selectors_skip_staleness_markers() {
    run(r#"
load 1m
    s_total 0 10 stale 20 30

# 0 10 20 30 at 0,1m,3m,4m in (-1m, 4m]: 30 over 240s, average 80s;
# start 60s away but the counter is 0 at the first sample.
eval instant at 4m increase(s_total[5m])
    {} 30

eval instant at 4m rate(s_total[5m])
    {} 0.1
"#)
    .await;
}

#[tokio::test]
async fn aggregations_by_and_without() {
    run(r#"
load 1m
    http_requests{job="api", instance="0", group="a"} 1
    http_requests{job="api", instance="1", group="a"} 2
    http_requests{job="db", instance="0", group="b"} 4
    http_requests{job="db", instance="1", group="a"} 8

eval instant at 0 sum(http_requests)
    {} 15

eval instant at 0 sum by (job) (http_requests)
    {job="api"} 3
    {job="db"} 12

eval instant at 0 sum(http_requests) by (job)
    {job="api"} 3
    {job="db"} 12

eval instant at 0 avg without (instance) (http_requests)
    {job="api", group="a"} 1.5
    {job="db", group="b"} 4
    {job="db", group="a"} 8

eval instant at 0 count by (group) (http_requests)
    {group="a"} 3
    {group="b"} 1

eval instant at 0 max by (job) (http_requests)
    {job="api"} 2
    {job="db"} 8

eval instant at 0 min(http_requests)
    {} 1

eval instant at 0 avg(http_requests)
    {} 3.75

eval instant at 0 sum by (nonexistent) (http_requests)
    {} 15

# Grouping by the name keeps it.
eval instant at 0 sum by (__name__, job) (http_requests)
    http_requests{job="api"} 3
    http_requests{job="db"} 12

eval instant at 0 sum without (job, instance, group) (http_requests)
    {} 15

# The only sample, at 0, is out of the lookback window at 5m.
eval range from 0 to 10m step 5m count(http_requests)
    {} 4 _ _
"#)
    .await;
}

#[tokio::test]
async fn aggregating_rates() {
    run(r#"
load 5m
    c_total{x="a", i="0"} 0+10x10
    c_total{x="a", i="1"} 0+20x10
    c_total{x="b", i="0"} 0+30x10

eval instant at 50m sum by (x) (rate(c_total[50m]))
    {x="a"} 0.1
    {x="b"} 0.1

eval instant at 50m sum without (i) (increase(c_total[50m]))
    {x="a"} 300
    {x="b"} 300

eval range from 0 to 10m step 5m sum(rate(c_total[10m]))
    {} _ 0.1 0.2
"#)
    .await;
}

#[tokio::test]
async fn arithmetic_with_scalars() {
    run(r#"
load 1m
    http_requests{job="api", instance="0"} 1
    http_requests{job="api", instance="1"} 2
    http_requests{job="db", instance="0"} 4
    http_requests{job="db", instance="1"} 8

eval instant at 0 http_requests{job="api"} * 2
    {job="api", instance="0"} 2
    {job="api", instance="1"} 4

eval instant at 0 10 - http_requests{job="api"}
    {job="api", instance="0"} 9
    {job="api", instance="1"} 8

eval instant at 0 http_requests{job="db"} / 0
    {job="db", instance="0"} +Inf
    {job="db", instance="1"} +Inf

eval instant at 0 http_requests{job="db"} % 3
    {job="db", instance="0"} 1
    {job="db", instance="1"} 2

eval instant at 0 2 ^ http_requests{job="api"}
    {job="api", instance="0"} 2
    {job="api", instance="1"} 4

eval instant at 0 http_requests{job="api"} + -1
    {job="api", instance="0"} 0
    {job="api", instance="1"} 1

eval instant at 0 -http_requests{job="api"}
    {job="api", instance="0"} -1
    {job="api", instance="1"} -2

eval instant at 0 -(http_requests{job="api"} - 10) / 3
    {job="api", instance="0"} 3
    {job="api", instance="1"} 2.6666666666666665

eval instant at 0 sum(http_requests) / 3
    {} 5

eval instant at 0 0 / 0
    NaN

eval instant at 0 1 + 2 * 3
    7

eval instant at 0 (1 + 2) * 3
    9

eval instant at 0 2 ^ 3 ^ 2
    512

eval instant at 0 -2 ^ 2
    -4

eval instant at 0 7 % -3
    1

eval instant at 0 -(-(3))
    3

eval range from 0 to 2m step 1m 1 + 1
    {} 2 2 2

eval range from 0 to 2m step 1m http_requests{instance="0"} * 10
    {job="api", instance="0"} 10 10 10
    {job="db", instance="0"} 40 40 40
"#)
    .await;
}

#[tokio::test]
async fn over_time_functions() {
    run(r#"
load 1m
    g{x="a"} 1 3 2 5 4
    s{x="a"} 1 stale 7

# Window (-1m, 4m] holds all five samples 1 3 2 5 4.
eval instant at 4m avg_over_time(g[5m])
    {x="a"} 3

eval instant at 4m min_over_time(g[5m])
    {x="a"} 1

eval instant at 4m max_over_time(g[5m])
    {x="a"} 5

eval instant at 4m sum_over_time(g[5m])
    {x="a"} 15

eval instant at 4m count_over_time(g[5m])
    {x="a"} 5

eval instant at 4m present_over_time(g[5m])
    {x="a"} 1

# last_over_time acts like an offset and keeps the name.
eval instant at 4m last_over_time(g[5m])
    g{x="a"} 4

# Squared deviations from 3: 4 0 1 4 1.
eval instant at 4m stdvar_over_time(g[5m])
    {x="a"} 2

eval instant at 4m stddev_over_time(g[5m])
    {x="a"} 1.4142135623730951

# Sorted 1 2 3 4 5: rank q*4, interpolated.
eval instant at 4m quantile_over_time(0.1, g[5m])
    {x="a"} 1.4

eval instant at 4m quantile_over_time(0.25 * 3, g[5m])
    {x="a"} 4

eval instant at 4m quantile_over_time(2, g[5m])
    {x="a"} +Inf

eval instant at 4m quantile_over_time(-1, g[5m])
    {x="a"} -Inf

# Windows (-1m,1m] (0,2m] (1m,3m]: 1 3 | 3 2 | 2 5.
eval range from 1m to 3m step 1m max_over_time(g[2m])
    {x="a"} 3 3 5

# Staleness markers are skipped; empty windows give nothing.
eval range from 0 to 2m step 1m count_over_time(s[1m])
    {x="a"} 1 _ 1

eval instant at 10m count_over_time(g[1m])
"#)
    .await;
}

#[tokio::test]
async fn rate_like_range_functions() {
    run(r#"
load 1m
    g{x="a"} 1 3 2 5 4

eval instant at 4m changes(g[5m])
    {x="a"} 4

eval instant at 4m resets(g[5m])
    {x="a"} 2

# Last two samples 5 then 4: a reset for irate (4 over 60s).
eval instant at 4m idelta(g[5m])
    {x="a"} -1

eval instant at 4m irate(g[5m])
    {x="a"} 0.06666666666666667

# Increase 3 over 240s sampled; 60s to the window start is extrapolated.
eval instant at 4m delta(g[5m])
    {x="a"} 3.75

# x = 0 60 120 180 240 s: covariance 480, variance 36000.
eval instant at 4m deriv(g[5m])
    {x="a"} 0.013333333333333334

# Anchored at 4m: intercept 3 + 120/75 = 4.6, plus 60s of slope.
eval instant at 4m predict_linear(g[5m], 60)
    {x="a"} 5.4

# One sample: no derivative, no instant rate.
eval instant at 0 deriv(g[5m])

eval instant at 0 irate(g[5m])
"#)
    .await;
}

#[tokio::test]
async fn range_functions_and_names() {
    run(r#"
load 1m
    a{x="1"} 1 2
    b{x="1"} 3 4

eval instant at 1m sum_over_time({__name__=~"a|b"}[5m])
    expect fail msg: vector cannot contain metrics with the same labelset

eval instant at 1m last_over_time({__name__=~"a|b"}[5m])
    a{x="1"} 2
    b{x="1"} 4

eval instant at 1m last_over_time(a[5m] offset 1m)
    a{x="1"} 1
"#)
    .await;
}

#[tokio::test]
async fn math_functions() {
    run(r#"
load 1m
    m{x="a"} -2.5
    m{x="b"} 4
    m{x="c"} NaN

eval instant at 0 ceil(m)
    {x="a"} -2
    {x="b"} 4
    {x="c"} NaN

eval instant at 0 floor(m)
    {x="a"} -3
    {x="b"} 4
    {x="c"} NaN

eval instant at 0 sgn(m)
    {x="a"} -1
    {x="b"} 1
    {x="c"} NaN

eval instant at 0 sqrt(m{x="b"})
    {x="b"} 2

eval instant at 0 log2(m{x="b"})
    {x="b"} 2

eval instant at 0 ln(m{x="b"})
    {x="b"} 1.3862943611198906

eval instant at 0 exp(m{x="b"} - 4)
    {x="b"} 1

eval instant at 0 log10(m{x="b"} * 25)
    {x="b"} 2

# Ties round up.
eval instant at 0 round(m)
    {x="a"} -2
    {x="b"} 4
    {x="c"} NaN

eval instant at 0 round(m{x="b"}, 3)
    {x="b"} 3

eval instant at 0 clamp(m, -1, 1)
    {x="a"} -1
    {x="b"} 1
    {x="c"} NaN

# max < min: nothing.
eval instant at 0 clamp(m, 1, -1)

eval instant at 0 clamp_min(m, 0)
    {x="a"} 0
    {x="b"} 4
    {x="c"} NaN

eval instant at 0 clamp_max(m, 0)
    {x="a"} -2.5
    {x="b"} 0
    {x="c"} NaN

eval instant at 0 deg(rad(m{x="b"}))
    {x="b"} 4

eval instant at 0 cos(m{x="b"} * 0)
    {x="b"} 1
"#)
    .await;
}

#[tokio::test]
async fn timestamp_vector_scalar_and_time() {
    run(r#"
load 1m
    m{x="a"} 1 _ _ 4
    n{x="a"} 1
    n{x="b"} 2

# Of a selector: the time of the sample picked, not the evaluation time.
eval range from 0 to 4m step 1m timestamp(m)
    {x="a"} 0 0 0 180 180

eval range from 0 to 2m step 1m timestamp(-m)
    {x="a"} 0 60 120

eval instant at 90s timestamp((m offset 1m))
    {x="a"} 0

eval instant at 2m time()
    120

eval range from 0 to 2m step 1m time()
    {} 0 60 120

eval range from 0 to 2m step 1m vector(time())
    {} 0 60 120

eval instant at 0 scalar(m)
    1

# More than one element: NaN.
eval instant at 0 scalar(n)
    NaN

eval instant at 0 scalar(nonexistent)
    NaN

eval instant at 3m m * scalar(n{x="b"})
    {x="a"} 8

eval instant at 0 max_of(1, 2)
    2

eval instant at 0 min_of(1, NaN)
    NaN

eval instant at 0 pi()
    3.141592653589793

# Names are dropped; series differing only by name collide.
eval instant at 0 ceil({__name__=~"m|n", x="a"})
    expect fail msg: vector cannot contain metrics with the same labelset
"#)
    .await;
}

#[tokio::test]
async fn comparisons_with_scalars() {
    run(r#"
load 1m
    m{x="a"} 1
    m{x="b"} 5
    m{x="c"} NaN
    n{x="a"} 5

# Filtering keeps the value and the name.
eval instant at 0 m > 2
    m{x="b"} 5

eval instant at 0 2 > m
    m{x="a"} 1

eval instant at 0 m == 5
    m{x="b"} 5

eval instant at 0 m != 5
    m{x="a"} 1
    m{x="c"} NaN

eval instant at 0 m <= 1
    m{x="a"} 1

eval instant at 0 m >= 5
    m{x="b"} 5

eval instant at 0 m < 1

# bool: 0 or 1 for every element, without the name.
eval instant at 0 m > bool 2
    {x="a"} 0
    {x="b"} 1
    {x="c"} 0

eval instant at 0 2 >= bool m
    {x="a"} 1
    {x="b"} 0
    {x="c"} 0

eval instant at 0 1 < bool 2
    1

eval instant at 0 1 == bool 2
    0

eval instant at 0 (1 > bool 2) + 3
    3

eval range from 0 to 2m step 1m m{x="a"} == time() / 60 + 1
    m{x="a"} 1 _ _

# Without bool names stay, so differing names cannot collide.
eval instant at 0 {__name__=~"m|n", x="a"} < 10
    m{x="a"} 1
    n{x="a"} 5

eval instant at 0 {__name__=~"m|n", x="a"} < bool 10
    expect fail msg: vector cannot contain metrics with the same labelset
"#)
    .await;
}

#[tokio::test]
async fn vector_matching_one_to_one() {
    run(r#"
load 1m
    a{job="x", i="0"} 10 20
    a{job="y", i="0"} 30 stale
    b{job="x", i="0"} 2 4
    b{job="y", i="1"} 3 3
    c{job="x"} 5 5
    c{job="y"} 6 6

# Matched on all labels but the name; the name is dropped.
eval instant at 0 a / b
    {job="x", i="0"} 5

eval range from 0 to 1m step 1m a - b
    {job="x", i="0"} 8 16

eval instant at 0 a * on (job) b
    {job="x"} 20
    {job="y"} 90

eval instant at 0 a + ignoring (i) c
    {job="x"} 15
    {job="y"} 36

# Comparisons filter and keep the left side's value and name...
eval instant at 0 b >= ignoring (i) c

eval instant at 0 c != ignoring (i) b
    c{job="x"} 5
    c{job="y"} 6

# ... but on () keeps only the listed labels.
eval instant at 0 a > on (job) b
    {job="x"} 10
    {job="y"} 30

eval instant at 0 a < bool on (job) b
    {job="x"} 0
    {job="y"} 0

# A step without a left-hand value needs no match.
eval range from 0 to 1m step 1m a / on (job) c
    {job="x"} 2 4
    {job="y"} 5 _

# Two left-hand series with one signature.
eval instant at 0 {__name__=~"a|b", job="x"} + ignoring (i) c
    expect fail msg: multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)

# Two right-hand series with one signature.
eval instant at 0 c + on () b
    expect fail msg: found duplicate series for the match group {} on the right hand-side of the operation: [{__name__="b", i="0", job="x"}, {__name__="b", i="1", job="y"}];many-to-many matching not allowed: matching labels must be unique on one side

eval instant at 0 a + on (job) group_left b
    {job="x", i="0"} 12
    {job="y", i="0"} 33
"#)
    .await;
}

#[tokio::test]
async fn set_operators() {
    run(r#"
load 1m
    a{job="x"} 1 1 stale
    a{job="y"} 2 2 2
    b{job="x"} _ 10 10
    b{job="z"} 30 30 30

eval range from 0 to 2m step 1m a and b
    a{job="x"} _ 1 _

eval range from 0 to 2m step 1m a unless b
    a{job="x"} 1 _ _
    a{job="y"} 2 2 2

eval range from 0 to 2m step 1m a or b
    a{job="x"} 1 1 _
    a{job="y"} 2 2 2
    b{job="x"} _ _ 10
    b{job="z"} 30 30 30

eval instant at 0 a and on () b
    a{job="x"} 1
    a{job="y"} 2

eval instant at 0 a unless ignoring (job) b

eval instant at 1m b or on () a
    b{job="x"} 10
    b{job="z"} 30

# Names are kept.
eval instant at 0 -a or b
    {job="x"} -1
    {job="y"} -2
    b{job="z"} 30
"#)
    .await;
}

#[tokio::test]
async fn unsupported_constructs_are_refused() {
    run(r#"
load 1m
    m{a="1"} 1

eval instant at 0 histogram_count(m)
    expect fail msg: the function "histogram_count" is not supported yet

eval instant at 0 sort_by_label(m, "a")
    expect fail msg: parse error: function "sort_by_label" is not enabled

eval instant at 0 abs(-m)
    {a="1"} 1

eval instant at 0 m atan2 1
    {a="1"} 0.7853981633974483

eval instant at 0 limitk(1, m)
    expect fail msg: parse error: function "limitk" is not enabled


eval instant at 0 histogram_quantiles(m, "q", 0.5)
    expect fail msg: parse error: function "histogram_quantiles" is not enabled


eval instant at 0 sum(
    expect fail
"#)
    .await;
}

#[tokio::test]
async fn duplicate_label_sets_after_dropping_names() {
    run(r#"
load 1m
    a_total{x="1"} 0+1x10
    b_total{x="1"} 0+2x10
    c{x="1"} 1
    d{x="1"} _ _ _ _ _ _ 7

eval instant at 5m rate({__name__=~"a_total|b_total"}[5m])
    expect fail msg: vector cannot contain metrics with the same labelset

eval instant at 5m {__name__=~"a_total|b_total"} * 2
    expect fail msg: vector cannot contain metrics with the same labelset

eval instant at 5m -{__name__=~"a_total|b_total"}
    expect fail msg: vector cannot contain metrics with the same labelset

eval instant at 5m sum(rate({__name__=~"a_total|b_total"}[5m]))
    expect fail msg: vector cannot contain metrics with the same labelset

# Without dropping names nothing collides.
eval instant at 5m sum({__name__=~"a_total|b_total"})
    {} 15

eval instant at 5m {__name__=~"a_total|b_total"}
    a_total{x="1"} 5
    b_total{x="1"} 10

# Series that take turns become one.
eval range from 0 to 10m step 1m -{__name__=~"c|d"}
    {x="1"} -1 -1 -1 -1 -1 _ -7 -7 -7 -7 -7
"#)
    .await;
}

#[tokio::test]
async fn lookback_delta_is_configurable() {
    let store = MemStore::default().with("t", &[("__name__", "m")], &[(0, 1.0)]);
    let options = EngineOptions {
        lookback_delta: Duration::from_secs(60),
        ..Default::default()
    };
    let engine = Engine::new(Arc::new(store), options);
    let got = engine
        .instant_query("t", "m", 120_000, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(got, QueryValue::Vector(vec![]));
    let got = engine
        .instant_query("t", "m", 59_999, &QueryOptions::default())
        .await
        .unwrap();
    assert!(matches!(got, QueryValue::Vector(v) if v.len() == 1));
    // Per-query override.
    let opts = QueryOptions {
        lookback_delta: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let got = engine
        .instant_query("t", "m", 120_000, &opts)
        .await
        .unwrap();
    assert!(matches!(got, QueryValue::Vector(v) if v.len() == 1));
}

#[tokio::test]
async fn instant_results_carry_the_evaluation_time() {
    let store = MemStore::default().with("t", &[("__name__", "m"), ("a", "b")], &[(1_000, 3.0)]);
    let engine = Engine::new(Arc::new(store), EngineOptions::default());
    let got = engine
        .instant_query("t", "m", 61_234, &QueryOptions::default())
        .await
        .unwrap();
    let want = InstantSample {
        labels: Labels::from_pairs([("__name__", "m"), ("a", "b")]),
        t: 61_234,
        v: 3.0,
    };
    assert_eq!(got, QueryValue::Vector(vec![want]));
    let got = engine
        .instant_query("t", "1.5", 61_234, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(got, QueryValue::Scalar { t: 61_234, v: 1.5 });
    // Another tenant sees nothing.
    let got = engine
        .instant_query("other", "m", 61_234, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(got, QueryValue::Vector(vec![]));
}

#[tokio::test]
async fn selects_ask_for_the_needed_range_only() {
    let store = Arc::new(MemStore::default());
    let engine = Engine::new(store.clone(), EngineOptions::default());
    let opts = QueryOptions::default();
    engine
        .instant_query("t", "m", 600_000, &opts)
        .await
        .unwrap();
    engine
        .instant_query("t", "rate(m[5m] offset 1m)", 600_000, &opts)
        .await
        .unwrap();
    engine
        .range_query("t", "m offset -1m", 600_000, 900_000, 60_000, &opts)
        .await
        .unwrap();
    let selects = store.selects.lock().unwrap().clone();
    assert_eq!(
        selects,
        vec![
            SelectHints::range(300_001, 600_000),
            SelectHints::range(240_001, 540_000),
            SelectHints::range(360_001, 960_000),
        ]
    );
}

#[tokio::test]
async fn range_queries_are_limited_to_11000_steps() {
    let engine = Engine::new(Arc::new(MemStore::default()), EngineOptions::default());
    let opts = QueryOptions::default();
    let ok = engine
        .range_query("t", "1", 0, 11_000_000, 1000, &opts)
        .await
        .unwrap();
    assert!(matches!(ok, QueryValue::Matrix(m) if m[0].points.len() == 11_001));
    let err = engine
        .range_query("t", "1", 0, 11_001_000, 1000, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadData);
    assert_eq!(
        err.to_string(),
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
    );
    let err = engine
        .range_query("t", "1", 10, 0, 1000, &opts)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "end timestamp must not be before start time"
    );
    let err = engine
        .range_query("t", "1", 0, 10, 0, &opts)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "zero or negative query resolution step widths are not accepted. Try a positive integer"
    );
    let err = engine
        .range_query("t", "m[5m]", 0, 10, 1, &opts)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
    );
    assert_eq!(err.kind(), ErrorKind::BadData);
}

#[tokio::test]
async fn sample_limit_fails_the_query() {
    let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 1000, i as f64)).collect();
    let store = MemStore::default().with("t", &[("__name__", "m")], &samples);
    let options = EngineOptions {
        max_samples: 50,
        ..Default::default()
    };
    let engine = Engine::new(Arc::new(store), options);
    let err = engine
        .range_query("t", "m", 0, 99_000, 1000, &QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    assert_eq!(err.kind(), ErrorKind::Execution);
    // Materialised steps count too: 1 sample, 101 output points.
    let store = MemStore::default().with("t", &[("__name__", "m")], &[(0, 1.0)]);
    let options = EngineOptions {
        max_samples: 100,
        lookback_delta: Duration::from_secs(3600),
        ..Default::default()
    };
    let engine = Engine::new(Arc::new(store), options);
    let err = engine
        .range_query("t", "m", 0, 100_000, 1000, &QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Execution);
}

#[tokio::test]
async fn parse_errors_are_bad_data() {
    let engine = Engine::new(Arc::new(MemStore::default()), EngineOptions::default());
    for q in ["", "sum(", "m{", "rate(m)", "1 +", "m{a=~\"(\"}"] {
        let err = engine
            .instant_query("t", q, 0, &QueryOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadData, "{q}: {err}");
    }
}

#[tokio::test]
async fn storage_errors_pass_through() {
    let store = MemStore {
        fail_with: Some(StorageError::Unavailable("ingester down".into())),
        ..Default::default()
    };
    let engine = Engine::new(Arc::new(store), EngineOptions::default());
    let err = engine
        .instant_query("t", "sum(rate(m[5m]))", 0, &QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("ingester down"), "{err}");
}

#[tokio::test]
async fn queries_time_out() {
    let options = EngineOptions {
        timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let engine = Engine::new(Arc::new(StuckStore), options);
    let err = engine
        .instant_query("t", "m", 0, &QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.to_string(), "query timed out in query execution");
    // A shorter per-query timeout wins.
    let engine = Engine::new(Arc::new(StuckStore), EngineOptions::default());
    let opts = QueryOptions {
        timeout: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    let err = engine.instant_query("t", "m", 0, &opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

/// A store that generates `n` series lazily and counts how many were
/// pulled.
struct LazyStore {
    n: usize,
    pulled: Arc<AtomicUsize>,
}

#[async_trait]
impl Queryable for LazyStore {
    async fn select(
        &self,
        _: &str,
        _: &[Matcher],
        hints: SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let pulled = self.pulled.clone();
        let n = self.n;
        let start = hints.start_ms.max(0);
        Ok(futures::stream::iter(0..n)
            .map(move |i| {
                pulled.fetch_add(1, Ordering::SeqCst);
                let id = format!("{i:08}");
                let labels = Labels::from_pairs([
                    ("__name__", "m_total"),
                    ("id", &id),
                    ("x", if i % 2 == 0 { "even" } else { "odd" }),
                ]);
                let samples = (0..20)
                    .map(|k| Sample {
                        t: start + k * 15_000,
                        v: (k * 10) as f64,
                    })
                    .collect();
                Ok(Series { labels, samples })
            })
            .boxed())
    }
    async fn label_names(
        &self,
        _: &str,
        _: &[Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(vec![])
    }
    async fn label_values(
        &self,
        _: &str,
        _: &str,
        _: &[Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn operators_stream_one_series_at_a_time() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(LazyStore {
        n: 1000,
        pulled: pulled.clone(),
    });
    let expr = promql_parser::parser::parse("-rate(m_total[5m])").unwrap();
    let positions = super::position::Positions::new("-rate(m_total[5m])", &expr);
    let sink = super::annotations::AnnotationSink::default();
    let planner = plan::Planner {
        positions: &positions,
        start: 300_000,
        end: 300_000,
        range_query: false,
        default_subquery_step_ms: 60_000,
        annotations: &sink,
        experimental_functions: false,
    };
    let plan::AnyPlan::Value(operator::Plan::Vector(op)) = plan::plan(&expr, &planner).unwrap() else {
        panic!("vector plan")
    };
    let ctx = Arc::new(EvalContext {
        tenant: "t".into(),
        queryable: store,
        start: 300_000,
        interval: 1,
        num_steps: 1,
        lookback_ms: 300_000,
        budget: Arc::new(SampleBudget::new(usize::MAX)),
        annotations: Arc::default(),
    });
    let mut stream = op.execute(ctx);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.labels.get("id"), Some("00000000"));
    // Only the first input series was read to produce the first output.
    assert_eq!(pulled.load(Ordering::SeqCst), 1);
    let rest = stream.count().await;
    assert_eq!(rest, 999);
}

#[tokio::test]
async fn aggregating_many_series() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(LazyStore {
        n: 20_000,
        pulled: pulled.clone(),
    });
    let engine = Engine::new(store, EngineOptions::default());
    let got = engine
        .instant_query(
            "t",
            "sum by (x) (rate(m_total[5m]))",
            300_000,
            &QueryOptions::default(),
        )
        .await
        .unwrap();
    let QueryValue::Vector(v) = got else {
        panic!("vector")
    };
    assert_eq!(v.len(), 2);
    // Every series is the same counter: the sums are 10,000 times one rate.
    let one = engine
        .instant_query(
            "t",
            "rate(m_total{id=\"00000000\"}[5m])",
            300_000,
            &QueryOptions::default(),
        )
        .await
        .unwrap();
    let QueryValue::Vector(one) = one else {
        panic!("vector")
    };
    let want = one[0].v * 10_000.0;
    for s in &v {
        assert!((s.v - want).abs() <= 1e-9 * want, "{} vs {want}", s.v);
    }
}

#[test]
fn engine_options_deserialize_with_humantime() {
    let opts: EngineOptions =
        serde_json::from_str(r#"{"lookback_delta":"1m","timeout":"30s","max_samples":10}"#)
            .unwrap();
    assert_eq!(opts.lookback_delta, Duration::from_secs(60));
    assert_eq!(opts.timeout, Duration::from_secs(30));
    assert_eq!(opts.max_samples, 10);
    let opts: EngineOptions = serde_json::from_str("{}").unwrap();
    assert_eq!(opts, EngineOptions::default());
}

#[tokio::test]
async fn script_options_apply() {
    let options = EngineOptions {
        max_samples: 1,
        ..Default::default()
    };
    run_with(
        r#"
load 1m
    m 1 2 3

eval instant at 3m m
    expect fail msg: query processing would load too many samples into memory in query execution
"#,
        options,
    )
    .await;
}

#[tokio::test]
async fn timeouts_fire_during_in_memory_scans() {
    // Millions of lazily generated series: without yielding to the runtime
    // the timeout could only fire once the scan ends.
    let store = Arc::new(LazyStore {
        n: 5_000_000,
        pulled: Arc::default(),
    });
    let options = EngineOptions {
        timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let engine = Engine::new(store, options);
    let started = std::time::Instant::now();
    let err = engine
        .instant_query(
            "t",
            "sum(rate(m_total[5m]))",
            300_000,
            &QueryOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn parameterised_aggregations() {
    run(r#"
load 1m
    m{a="1", b="x"} 1 2
    m{a="2", b="x"} 3 NaN
    m{a="3", b="y"} 3 4

eval instant at 0 topk(2, m)
    expect ordered
    m{a="3", b="y"} 3
    m{a="2", b="x"} 3

eval instant at 1m bottomk by (b) (1, m)
    m{a="1", b="x"} 2
    m{a="3", b="y"} 4

eval instant at 1m topk(5, m)
    expect ordered
    m{a="3", b="y"} 4
    m{a="1", b="x"} 2
    m{a="2", b="x"} NaN

eval instant at 0 topk(0, m)

eval instant at 0 topk(NaN, m)
    expect fail msg: Parameter value is NaN

eval instant at 0 quantile by (b) (0.5, m)
    {b="x"} 2
    {b="y"} 3

eval instant at 0 count_values by (b) ("value", m)
    {b="x", value="1"} 1
    {b="x", value="3"} 1
    {b="y", value="3"} 1

eval instant at 0 count_values without (a) ("b", m)
    {b="1"} 1
    {b="3"} 2

eval instant at 0 count_values("", m)
    expect fail msg: invalid label name ""

eval instant at 0 group by (b) (m)
    {b="x"} 1
    {b="y"} 1

eval instant at 0 stdvar(m)
    {} 0.888888888888889

eval instant at 0 stddev by (b) (m)
    {b="x"} 1
    {b="y"} 0
"#)
    .await;
}

#[tokio::test]
async fn label_and_vector_functions() {
    run(r#"
load 1m
    m{a="1", b="x"} 2 _
    m{a="2", b="x"} NaN _
    m{a="3", b="y"} 1 _

eval instant at 0 label_replace(m, "c", "$1-$2", "b", "(x)(.*)")
    m{a="1", b="x", c="x-"} 2
    m{a="2", b="x", c="x-"} NaN
    m{a="3", b="y"} 1

eval instant at 0 label_replace(m, "a", "z", "b", ".*")
    expect fail msg: vector cannot contain metrics with the same labelset

eval instant at 0 label_replace(m, "c", "", "b", "(")
    expect fail msg: invalid regular expression in label_replace(): (

eval instant at 0 label_join(m, "c", "-", "a", "b", "nope")
    m{a="1", b="x", c="1-x-"} 2
    m{a="2", b="x", c="2-x-"} NaN
    m{a="3", b="y", c="3-y-"} 1

eval instant at 0 sort(m)
    expect ordered
    m{a="3", b="y"} 1
    m{a="1", b="x"} 2
    m{a="2", b="x"} NaN

eval instant at 0 sort_desc(m)
    expect ordered
    m{a="1", b="x"} 2
    m{a="3", b="y"} 1
    m{a="2", b="x"} NaN

eval instant at 0 absent(m)

eval range from 0 to 10m step 5m absent(m{a="1", b=~"x", c="z"})
    {a="1", c="z"} 1 1 1

eval range from 0 to 4m step 1m absent_over_time(m{a="1"}[2m])
    {a="1"} _ _ 1 1 1
"#)
    .await;
}

#[tokio::test]
async fn many_to_one_matching() {
    run(r#"
load 1m
    req{job="a", instance="1"} 10
    req{job="a", instance="2"} 20
    req{job="b", instance="3"} 30
    info{job="a", version="v1", team="x"} 2
    info{job="b", version="v2"} 3

eval instant at 0 req * on (job) group_left (version, team) info
    {job="a", instance="1", version="v1", team="x"} 20
    {job="a", instance="2", version="v1", team="x"} 40
    {job="b", instance="3", version="v2"} 90

eval instant at 0 info - on (job) group_right req
    {job="a", instance="1"} -8
    {job="a", instance="2"} -18
    {job="b", instance="3"} -27

eval instant at 0 info < on (job) group_right req
    req{job="a", instance="1"} 2
    req{job="a", instance="2"} 2
    req{job="b", instance="3"} 3

eval instant at 0 req > bool on (job) group_left info
    {job="a", instance="1"} 1
    {job="a", instance="2"} 1
    {job="b", instance="3"} 1

eval instant at 0 info * on (job) group_left req
    expect fail msg: found duplicate series for the match group {job="a"} on the right hand-side of the operation: [{__name__="req", instance="1", job="a"}, {__name__="req", instance="2", job="a"}];many-to-many matching not allowed: matching labels must be unique on one side

eval instant at 0 req * on (job) group_right info
    expect fail msg: found duplicate series for the match group {job="a"} on the left hand-side of the operation: [{__name__="req", instance="1", job="a"}, {__name__="req", instance="2", job="a"}];many-to-many matching not allowed: matching labels must be unique on one side

eval instant at 0 info * on () group_left req{instance="1"}
    {job="a", version="v1", team="x"} 20
    {job="b", version="v2"} 30
"#)
    .await;
}

#[tokio::test]
async fn topk_ranges_and_dates() {
    run(r#"
load 1m
    m{a="1"} 1 5 3
    m{a="2"} 2 4 6

eval range from 0 to 2m step 1m topk(1, m)
    m{a="1"} _ 5 _
    m{a="2"} 2 _ 6

eval range from 0 to 2m step 1m bottomk(time() / 60, m)
    m{a="1"} _ _ 3
    m{a="2"} _ 4 6

eval range from 0 to 2m step 1m minute()
    {} 0 1 2

eval instant at 0 year(m * 0 + 86400 * 366)
    {a="1"} 1971
    {a="2"} 1971

eval instant at 0 hour(m * NaN)
    expect fail msg: a date function of a value that is not a time in range is not supported yet
"#)
    .await;
}

fn experimental() -> EngineOptions {
    EngineOptions {
        experimental_functions: true,
        ..EngineOptions::default()
    }
}

#[tokio::test]
async fn limitk_and_limit_ratio() {
    run_with(
        r#"
load 5m
    http_requests{job="api-server", instance="0", group="production"} 0+10x10
    http_requests{job="api-server", instance="1", group="production"} 0+20x10
    http_requests{job="api-server", instance="0", group="canary"} 0+30x10
    http_requests{job="api-server", instance="1", group="canary"} 0+40x10
    http_requests{job="api-server", instance="2", group="canary"} 0+50x10
    http_requests{job="api-server", instance="3", group="canary"} 0+60x10

eval instant at 50m limitk by (group) (1, http_requests)
    http_requests{job="api-server", instance="0", group="canary"} 300
    http_requests{job="api-server", instance="0", group="production"} 100

eval instant at 50m count(limitk(2, http_requests))
    {} 2

eval range from 0 to 50m step 25m count(limitk by (group) (2, http_requests))
    {} 4 4 4

eval instant at 50m count(limitk(0, http_requests))

eval instant at 50m count(limit_ratio(1, http_requests))
    {} 6

eval instant at 50m count(limit_ratio(0.5, http_requests) or limit_ratio(-0.5, http_requests))
    {} 6

eval instant at 50m count(limit_ratio(0.5, http_requests) and limit_ratio(-0.5, http_requests))

eval instant at 50m limitk(NaN, http_requests)
    expect fail msg: Parameter value is NaN

eval instant at 50m limit_ratio(NaN, http_requests)
    expect fail msg: Ratio value is NaN
"#,
        experimental(),
    )
    .await;
}

#[tokio::test]
async fn limit_ratio_warns_when_capping() {
    let store = MemStore::default();
    let engine = Engine::new(Arc::new(store), experimental());
    let r = engine
        .instant_query_result("t", "limit_ratio(1.1, m)", 0, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(
        r.annotations.warnings,
        vec!["PromQL warning: ratio value should be between -1 and 1, got 1.1, capping to 1 (1:13)"]
    );
}

#[tokio::test]
async fn subqueries_with_more_steps_than_the_sample_limit_fail_before_allocating() {
    run(r#"
load 1m
    m 1+0x10

eval instant at 0 count_over_time(vector(1)[100d:1ms])
    expect fail msg: query processing would load too many samples into memory in query execution

eval instant at 10m count_over_time(m[10m:1m])
    {} 10
"#)
    .await;
}

#[tokio::test]
async fn double_exponential_smoothing_as_prometheus() {
    run_with(
        r#"
load 10s
    m{i="up"} 0+10x100
    m{i="down"} 1000-10x100
    m{i="wiggle"} 1 3 2 5 4 6
    m{i="one"} 7

eval instant at 500s double_exponential_smoothing(m[1m], 0.01, 0.1)
    {i="up"} 500
    {i="down"} 500

eval instant at 50s double_exponential_smoothing(m[1m], 0.5, 0.5)
    {i="up"} 50
    {i="down"} 950
    {i="wiggle"} 5.9296875

eval range from 50s to 60s step 10s double_exponential_smoothing(m{i="up"}[30s], 0.3, 0.3)
    {i="up"} 50 60

eval instant at 50s double_exponential_smoothing(m[1m], 1, 0.5)
    expect fail msg: invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000

eval instant at 50s double_exponential_smoothing(m[1m], 0.5, 0)
    expect fail msg: invalid trend factor. Expected: 0 < tf < 1, got: 0.000000

eval instant at 50s double_exponential_smoothing(m[1m], 0.5)
    expect fail
"#,
        experimental(),
    )
    .await;
}
