//! The gRPC codec of node-to-node calls: messages are serde types sent as
//! JSON, so there is no protobuf schema or `protoc` to keep in step.
//!
//! tonic frames each message; [`JsonCodec`] turns one frame's bytes into a
//! value (and back). Bytes from the network that are not the expected JSON
//! become `Status::invalid_argument`, never a panic.

use std::any::type_name;
use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Encodes `T` and decodes `U` as JSON; generated clients and servers
/// name it through `codec_path` in `build.rs`.
#[derive(Debug)]
pub struct JsonCodec<T, U>(PhantomData<fn(T) -> U>);

impl<T, U> Default for JsonCodec<T, U> {
    fn default() -> Self {
        JsonCodec(PhantomData)
    }
}

impl<T, U> Codec for JsonCodec<T, U>
where
    T: Serialize + Send + 'static,
    U: DeserializeOwned + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = JsonEncoder<T>;
    type Decoder = JsonDecoder<U>;

    fn encoder(&mut self) -> JsonEncoder<T> {
        JsonEncoder(PhantomData)
    }

    fn decoder(&mut self) -> JsonDecoder<U> {
        JsonDecoder(PhantomData)
    }
}

/// Writes one message as JSON.
#[derive(Debug)]
pub struct JsonEncoder<T>(PhantomData<fn(T)>);

impl<T: Serialize> Encoder for JsonEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        serde_json::to_writer(dst.writer(), &item).map_err(|e| {
            Status::internal(format!(
                "could not encode {} as JSON: {e}; this is a bug in shoal",
                type_name::<T>()
            ))
        })
    }
}

/// Reads one message from JSON.
#[derive(Debug)]
pub struct JsonDecoder<U>(PhantomData<fn() -> U>);

impl<U: DeserializeOwned> Decoder for JsonDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "the message is not a valid {} in JSON ({e}); both nodes must run compatible \
                 shoal versions",
                type_name::<U>()
            ))
        })
    }
}
