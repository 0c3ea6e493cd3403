//! What each request of a workload weighs and costs, and the faithful alternatives.
//!
//! A request is weighed and priced exactly as the router does before sending it: tokens from
//! [`quota::tokens::estimate`](crate::quota::tokens::estimate) (the model's size × quality
//! table times `n`, plus the prompt), cost from the router's
//! [`CostEstimator`](crate::quota::cost::CostEstimator) (catalog prices, or the configured
//! per-image fallback). The simulator and the real API bill what the table says for GPT image
//! models, so the estimate is the expected bill; a model without a published table (the
//! catalog's per-image estimate) is as uncertain as that estimate.
//!
//! # Faithful alternatives
//!
//! An alternative keeps what the user asked for and changes only how fine the image is: the
//! same model, size, `n` and prompts at a lower quality the model accepts (requests already at
//! or below it stay as they are). A cheaper model of the same family would be another
//! faithful alternative, but the catalog does not say which models form a family, and guessing
//! from names (`gpt-image-1-mini` next to `gpt-image-1`) would offer a model the user never
//! chose on a hunch, so none is offered until the catalog carries that fact.

use crate::catalog::Catalog;
use crate::quota::cost::{estimate_usd, CostEstimator};
use crate::quota::tokens;
use crate::request::{ImageRequest, Quality};

use super::drain::Weight;
use super::workload::{WorkItem, Workload};

/// One work item, weighed and priced.
pub(crate) struct Priced {
    pub model: String,
    pub request: ImageRequest,
    pub weight: Weight,
    pub cost_usd: Option<f64>,
    /// Why the request is invalid for its model (a typed validation error, in words).
    pub invalid: Option<String>,
}

/// Weighs and prices `item` (model `None`: `default_model`).
pub(crate) fn price(
    item: &WorkItem,
    catalog: &Catalog,
    costs: &CostEstimator,
    default_model: &str,
) -> Priced {
    let model = item
        .model
        .clone()
        .unwrap_or_else(|| default_model.to_string());
    let request = item.request(&model);
    let spec = catalog.model(&model);
    let invalid = request
        .validate(spec.map(|s| &s.capabilities))
        .err()
        .map(|e| e.to_string());
    let est = tokens::estimate(&request, spec, catalog.default_output_tokens_per_image());
    let cost_usd = costs
        .estimate(&model, spec, &request, &est)
        .ok()
        .map(|c| c.usd);
    Priced {
        weight: [1, est.total(), u64::from(item.n)],
        model,
        request,
        cost_usd,
        invalid,
    }
}

/// USD of one image of `item`'s model and size at `quality` (`None`: no price).
fn per_image(item: &WorkItem, catalog: &Catalog, model: &str, quality: Quality) -> Option<f64> {
    let spec = catalog.model(model)?;
    let one = item.clone().n(1).quality(quality).prompt_chars(1);
    let req = one.request(model);
    let est = tokens::estimate(&req, Some(spec), catalog.default_output_tokens_per_image());
    estimate_usd(spec, &req, &est)
}

/// A workload at a lower quality.
pub(crate) struct Lowered {
    pub quality: Quality,
    pub changed_requests: u64,
    pub workload: Workload,
}

/// Every lower quality that makes some request cheaper, as whole workloads (see the module
/// docs); invalid requests stay as they are.
pub(crate) fn lower_qualities(
    workload: &Workload,
    catalog: &Catalog,
    default_model: &str,
) -> Vec<Lowered> {
    let mut qualities: Vec<Quality> = Vec::new();
    for item in workload.items() {
        let model = item.model.as_deref().unwrap_or(default_model);
        if let Some(spec) = catalog.model(model) {
            for q in &spec.capabilities.qualities {
                if *q != Quality::Auto && !qualities.contains(q) {
                    qualities.push(*q);
                }
            }
        }
    }
    let mut out = Vec::new();
    for q in qualities {
        let mut changed = 0u64;
        let mut w = Workload::new();
        for item in workload.items() {
            let model = item.model.as_deref().unwrap_or(default_model);
            let accepts = catalog
                .model(model)
                .is_some_and(|s| s.capabilities.qualities.contains(&q));
            let now = catalog
                .model(model)
                .map(|s| s.resolve_quality(item.quality))
                .and_then(|cur| per_image(item, catalog, model, cur));
            let then = per_image(item, catalog, model, q);
            let cheaper = matches!((now, then), (Some(a), Some(b)) if b < a);
            if accepts && cheaper {
                changed = changed.saturating_add(item.count);
                w = w.with(item.clone().quality(q));
            } else {
                w = w.with(item.clone());
            }
        }
        if changed > 0 {
            out.push(Lowered {
                quality: q,
                changed_requests: changed,
                workload: w,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Size;

    #[test]
    fn requests_are_priced_as_the_router_prices_them() {
        let cat = Catalog::builtin();
        let item = WorkItem::new(1)
            .model("gpt-image-1")
            .quality(Quality::High)
            .size(Size::SQUARE)
            .n(2)
            .prompt_chars(40);
        let p = price(&item, cat, &CostEstimator::new(), "gpt-image-1");
        assert_eq!(p.weight, [1, 10 + 2 * 4160, 2]);
        let usd = p.cost_usd.unwrap();
        assert!(
            (usd - (10.0 * 5.0 + 8320.0 * 40.0) / 1e6).abs() < 1e-9,
            "{usd}"
        );
        assert!(p.invalid.is_none());
        // dall-e-3 takes one image per request: invalid, with the field named.
        let bad = price(
            &item.clone().model("dall-e-3").quality(Quality::Hd),
            cat,
            &CostEstimator::new(),
            "x",
        );
        let why = bad.invalid.unwrap_or_default();
        assert!(why.starts_with("invalid request: `n`"), "{why}");
    }

    #[test]
    fn lower_qualities_keep_model_size_and_n() {
        let cat = Catalog::builtin();
        let w = Workload::new()
            .with(
                WorkItem::new(10)
                    .model("gpt-image-1")
                    .quality(Quality::High)
                    .n(2),
            )
            .with(WorkItem::new(5).model("gpt-image-1").quality(Quality::Low));
        let alts = lower_qualities(&w, cat, "gpt-image-1");
        let qs: Vec<Quality> = alts.iter().map(|a| a.quality).collect();
        assert_eq!(qs, vec![Quality::Low, Quality::Medium]);
        let medium = &alts[1];
        assert_eq!(medium.changed_requests, 10);
        assert_eq!(medium.workload.items()[0].quality, Some(Quality::Medium));
        assert_eq!(medium.workload.items()[0].n, 2);
        assert_eq!(medium.workload.items()[1].quality, Some(Quality::Low));
        assert_eq!(alts[0].changed_requests, 10);
    }
}
