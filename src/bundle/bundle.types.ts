import { Field, Int, ObjectType } from '@nestjs/graphql';

@ObjectType({ description: 'One file of a pipeline bundle (a container build context for your own GPUs).' })
export class BundleFile {
  @Field({ description: 'Path inside the bundle, e.g. "serve.sh" or "k8s/deployment.yaml".' }) path!: string;
  @Field({ description: 'The file as text.' }) content!: string;
  @Field(() => Int, { description: 'Unix permission bits, e.g. 493 (0755) for serve.sh, 420 (0644) otherwise.' }) mode!: number;
}
