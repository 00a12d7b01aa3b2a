//! Real-time offers: merge what several OFFER scripts propose for one customer into one
//! ranked list.
//!
//! Rules, in order: an offer of a SKU that is not in the catalogue is dropped (there is
//! nothing to sell); a SKU in `exclude` (the cart) is dropped; a SKU the customer bought on a
//! paid order is dropped unless the offer says `allow_bought()`; when several scripts offer
//! the same SKU the highest score wins (ties: the source listed first); the rest is ranked by
//! score, highest first (ties: source order, then the script's order), and cut to `limit`.

use std::collections::{HashMap, HashSet};

use bakkal_domain::{Order, OrderStatus};
use bakkal_script::{Catalog, Offer};

/// The offers one script made, and where they come from.
#[derive(Debug, Clone)]
pub struct SourcedOffers {
    /// `campaigns/{id}`.
    pub campaign: String,
    /// `scripts/{id}@{revision}`: the revision that ran.
    pub script: String,
    pub offers: Vec<Offer>,
}

/// One offer of the merged list.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedOffer {
    pub sku: String,
    /// The product's display name.
    pub title: String,
    pub score: f64,
    pub reason: String,
    pub campaign: String,
    pub script: String,
}

/// SKUs on the customer's paid orders.
pub fn bought_skus<'a>(orders: impl IntoIterator<Item = &'a Order>) -> HashSet<String> {
    orders
        .into_iter()
        .filter(|o| o.status == OrderStatus::Paid)
        .flat_map(|o| o.lines.iter().map(|l| l.sku.clone()))
        .collect()
}

/// Merge and rank (see the module's rules).
pub fn rank(
    sources: &[SourcedOffers],
    catalog: &Catalog,
    bought: &HashSet<String>,
    exclude: &HashSet<String>,
    limit: usize,
) -> Vec<RankedOffer> {
    // (rank key: source index, position) keeps ties stable.
    let mut best: HashMap<&str, (usize, usize, &Offer, &SourcedOffers)> = HashMap::new();
    for (si, src) in sources.iter().enumerate() {
        for (pi, o) in src.offers.iter().enumerate() {
            if exclude.contains(&o.sku) || (!o.allow_bought && bought.contains(&o.sku)) {
                continue;
            }
            if catalog.get(&o.sku).is_none() {
                continue;
            }
            match best.get(o.sku.as_str()) {
                Some((_, _, held, _)) if held.score >= o.score => {}
                _ => {
                    best.insert(&o.sku, (si, pi, o, src));
                }
            }
        }
    }
    let mut picked: Vec<_> = best.into_values().collect();
    picked.sort_by(|a, b| {
        b.2.score
            .total_cmp(&a.2.score)
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    picked.truncate(limit);
    picked
        .into_iter()
        .map(|(_, _, o, src)| RankedOffer {
            sku: o.sku.clone(),
            title: catalog
                .get(&o.sku)
                .map(|p| p.product().display_name.clone())
                .unwrap_or_default(),
            score: o.score,
            reason: o.reason.clone(),
            campaign: src.campaign.clone(),
            script: src.script.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakkal_domain::Product;

    fn offer(sku: &str, score: f64, allow_bought: bool) -> Offer {
        Offer {
            sku: sku.into(),
            score,
            reason: format!("r-{sku}-{score}"),
            allow_bought,
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(
            ["A", "B", "C", "D"]
                .iter()
                .map(|s| Product {
                    sku: s.to_string(),
                    display_name: format!("Product {s}"),
                    category: "x".into(),
                    price: 1,
                    related_skus: vec![],
                    update_time: 0,
                })
                .collect(),
        )
    }

    fn src(campaign: &str, offers: Vec<Offer>) -> SourcedOffers {
        SourcedOffers {
            campaign: campaign.into(),
            script: "scripts/1@1".into(),
            offers,
        }
    }

    #[test]
    fn merges_ranks_and_excludes() {
        let sources = [
            src(
                "campaigns/1",
                vec![offer("A", 1.0, false), offer("B", 5.0, false)],
            ),
            src(
                "campaigns/2",
                vec![
                    offer("A", 3.0, false),
                    offer("C", 2.0, false),
                    offer("D", 9.0, false),
                    offer("Z", 99.0, false), // not in the catalogue
                ],
            ),
        ];
        let bought: HashSet<String> = ["D".to_string()].into();
        let got = rank(&sources, &catalog(), &bought, &HashSet::new(), 10);
        let skus: Vec<&str> = got.iter().map(|o| o.sku.as_str()).collect();
        assert_eq!(skus, ["B", "A", "C"]);
        assert_eq!(got[1].campaign, "campaigns/2");
        assert_eq!(got[1].title, "Product A");
        assert_eq!(got[1].reason, "r-A-3");

        let cart: HashSet<String> = ["B".to_string()].into();
        let got = rank(&sources, &catalog(), &bought, &cart, 2);
        let skus: Vec<&str> = got.iter().map(|o| o.sku.as_str()).collect();
        assert_eq!(skus, ["A", "C"]);
    }

    #[test]
    fn bought_products_only_when_allowed() {
        let sources = [src(
            "campaigns/1",
            vec![offer("A", 1.0, true), offer("B", 2.0, false)],
        )];
        let bought: HashSet<String> = ["A".to_string(), "B".to_string()].into();
        let got = rank(&sources, &catalog(), &bought, &HashSet::new(), 10);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].sku, "A");
    }

    #[test]
    fn ties_keep_source_order() {
        let sources = [
            src("campaigns/1", vec![offer("B", 1.0, false)]),
            src(
                "campaigns/2",
                vec![offer("A", 1.0, false), offer("B", 1.0, false)],
            ),
        ];
        let got = rank(&sources, &catalog(), &HashSet::new(), &HashSet::new(), 10);
        assert_eq!(got[0].sku, "B");
        assert_eq!(got[0].campaign, "campaigns/1");
        assert_eq!(got[1].sku, "A");
    }
}
