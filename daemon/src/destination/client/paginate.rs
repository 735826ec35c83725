//! [`paginate`]: a listing that takes several requests, as one stream.

use std::future::Future;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::destination::DestinationError;

/// The items of every page, fetched one page at a time as the stream is read.
/// `fetch(None)` gets the first page, `fetch(Some(token))` the one after; each returns
/// its items and the next page's token, `None` after the last page. A failed fetch ends
/// the stream with its error (retries belong inside `fetch`).
pub fn paginate<T, Token, F, Fut>(fetch: F) -> BoxStream<'static, Result<T, DestinationError>>
where
    T: Send + 'static,
    Token: Send + 'static,
    F: Fn(Option<Token>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<T>, Option<Token>), DestinationError>> + Send + 'static,
{
    enum Page<Token> {
        First,
        Next(Token),
        Done,
    }
    futures::stream::try_unfold((Page::First, fetch), |(page, fetch)| async move {
        let token = match page {
            Page::Done => return Ok(None),
            Page::First => None,
            Page::Next(t) => Some(t),
        };
        let (items, next) = fetch(token).await?;
        let next = next.map_or(Page::Done, Page::Next);
        Ok(Some((items, (next, fetch))))
    })
    .map_ok(|items: Vec<T>| futures::stream::iter(items.into_iter().map(Ok)))
    .try_flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[tokio::test]
    async fn pages_are_fetched_in_turn_until_the_last() {
        let items: Vec<u32> = paginate(|token: Option<u32>| async move {
            let page = token.unwrap_or(0);
            let next = (page < 2).then_some(page + 1);
            Ok((vec![page * 10, page * 10 + 1], next))
        })
        .try_collect()
        .await
        .unwrap();
        assert_eq!(items, [0, 1, 10, 11, 20, 21]);
    }

    #[tokio::test]
    async fn a_failed_page_ends_the_stream_with_its_error() {
        let got: Vec<Result<u32, DestinationError>> = paginate(|token: Option<u32>| async move {
            match token {
                None => Ok((vec![1], Some(1))),
                Some(_) => Err(DestinationError::new(
                    "test:d",
                    "listing",
                    None,
                    io::Error::from(io::ErrorKind::ConnectionRefused),
                )),
            }
        })
        .collect()
        .await;
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok() && got[1].is_err());
    }
}
