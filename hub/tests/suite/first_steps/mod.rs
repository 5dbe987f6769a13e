//! What a new user meets in their first minutes on a stock hub: the start banner and the
//! landing page, `nerve token`, the reasons a token is refused, and `nerve config check`.

mod config;
mod landing;
mod token;
mod unauthorized;
