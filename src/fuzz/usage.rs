//! Properties of `usage` parsing: any shape parses or fails without a panic, what parses
//! round-trips, and totals add without overflowing.

use super::*;

proptest! {
    #![proptest_config(direct())]

    /// `usage` of any shape: parsing never panics, what parses round-trips, and totals add.
    #[test]
    fn usage(a in usage_json(), b in usage_json()) {
        let parsed_a = serde_json::from_value::<Usage>(a.clone());
        let parsed_b = serde_json::from_value::<Usage>(b);
        if let Ok(u) = &parsed_a {
            let back = serde_json::to_value(u).ok().and_then(|v| serde_json::from_value::<Usage>(v).ok());
            prop_assert_eq!(back.as_ref(), Some(u));
            let out = u.output_image_tokens();
            prop_assert!(u.output_tokens_details.map_or(out == u.output_tokens, |d| out == d.image_tokens));
        }
        if let (Ok(mut x), Ok(y)) = (parsed_a, parsed_b) {
            // Totals saturate: a provider's numbers never overflow.
            let before = x.input_tokens;
            x.add(&y);
            prop_assert_eq!(x.input_tokens, before.saturating_add(y.input_tokens));
        }
        // The same usage inside a whole images response.
        let body = json!({"created": 1, "data": [{"b64_json": "AAAA"}], "usage": a});
        let _ = serde_json::from_value::<ImagesResponse>(body);
    }
}
