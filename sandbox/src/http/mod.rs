//! HTTP plumbing shared by the three services: the FastAPI-shaped error bodies, the JSON
//! extractor that produces them, and the routes every service has (health, fallbacks).

mod common_routes;
mod error;
mod json;

pub(crate) use common_routes::with_common_routes;
pub(crate) use error::{ApiError, Issue, LocPart};
pub(crate) use json::{ApiJson, parse_json};
