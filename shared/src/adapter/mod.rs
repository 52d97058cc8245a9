//! Port implementations. `local`: the embedded backends (files + SQLite) a user runs on one
//! machine; they are production code, not test doubles. `aws`: S3, SQS, SNS and DynamoDB on
//! aws-sdk-rust.

pub mod aws;
pub mod local;
