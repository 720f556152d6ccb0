import { describeError, registerSecret } from '../util/log.js';
import type { CredentialProvider, S3Credentials, S3Location } from './s3-object.js';
import { defaultS3Endpoint } from './s3-url.js';
import type { S3Spec } from './spec.js';

/**
 * Turns a parsed s3:// or r2:// spec into a location and credentials. Static credentials with a known
 * region need nothing more; otherwise the AWS SDK (≈400 ms to import, so only here and only then)
 * supplies its default provider chain (env, shared config/profiles, SSO, web identity, ECS/IMDS) and
 * the profile's region.
 */
export async function resolveS3Access(
  spec: S3Spec,
): Promise<{ location: S3Location; credentials: S3Credentials | CredentialProvider }> {
  let region = spec.region;
  let credentials: S3Credentials | CredentialProvider | undefined = spec.credentials;
  if (!credentials || !region) {
    const { S3Client } = await import('@aws-sdk/client-s3');
    const client = new S3Client({ region, profile: spec.profile });
    if (!region) region = await client.config.region().catch(() => undefined);
    if (!credentials) {
      const chain = client.config.credentials;
      const provider: CredentialProvider = async () => {
        const c = await chain();
        registerSecret(c.secretAccessKey);
        registerSecret(c.sessionToken);
        return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken, expiration: c.expiration };
      };
      try {
        await provider(); // fail at open with a clear message, not at the first read
      } catch (e) {
        const hint =
          spec.scheme === 'r2'
            ? 'set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY (or the AWS_ names, or a profile)'
            : 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure a profile';
        throw new Error(`${spec.name}: no credentials: ${hint} (${describeError(e)})`);
      }
      credentials = provider;
    }
  }
  region ??= 'us-east-1';
  return {
    location: {
      endpoint: spec.endpoint ?? defaultS3Endpoint(region),
      bucket: spec.bucket,
      key: spec.key,
      region,
      pathStyle: spec.pathStyle,
      name: spec.name,
    },
    credentials,
  };
}
