//! `SnsTopic`: publish to an SNS topic; SNS fans the message out to the subscribed queues,
//! applying their message-body filter policies and raw-delivery settings (set up by
//! [`super::provision`] locally, by the CDK app on AWS).

use async_trait::async_trait;

use super::Clients;
use super::classify::{Fault, classify, describe};
use crate::port::topic::{Topic, TopicError};

/// Largest message SNS accepts.
pub const MAX_MESSAGE: usize = 262_144;

/// An SNS topic.
#[derive(Clone, Debug)]
pub struct SnsTopic {
    sns: aws_sdk_sns::Client,
    arn: String,
}

impl SnsTopic {
    /// The topic `arn`.
    pub fn new(clients: &Clients, arn: &str) -> Self {
        Self {
            sns: clients.sns.clone(),
            arn: arn.to_owned(),
        }
    }

    /// The topic ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }
}

#[async_trait]
impl Topic for SnsTopic {
    async fn publish(&self, message: &str) -> Result<String, TopicError> {
        if message.is_empty() {
            return Err(TopicError::Invalid("empty message".into()));
        }
        if message.len() > MAX_MESSAGE {
            return Err(TopicError::Invalid(format!(
                "message of {} bytes exceeds SNS's {MAX_MESSAGE}",
                message.len()
            )));
        }
        let out = self
            .sns
            .publish()
            .topic_arn(&self.arn)
            .message(message)
            .send()
            .await;
        match out {
            Ok(o) => Ok(o.message_id.unwrap_or_default()),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_invalid_parameter_exception() || s.is_invalid_parameter_value_exception()
                }) =>
            {
                Err(TopicError::Invalid(describe(&e)))
            }
            Err(e) => {
                let what = format!("SNS Publish to {}: {}", self.arn, describe(&e));
                Err(match classify(&e) {
                    Fault::Throttled => TopicError::Throttled(what),
                    Fault::Unavailable | Fault::Timeout => TopicError::Unavailable(what),
                    Fault::Permanent => TopicError::Other(what),
                })
            }
        }
    }
}
