//! The catalog: token estimates, tiers and prices as data, the numbers limiters and budgets
//! reserve against.

mod prices;
mod published;
mod tokens;
mod worked_prices; // every model's price against a worked example
