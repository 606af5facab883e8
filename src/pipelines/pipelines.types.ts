import { Field, Float, ID, InputType, Int, ObjectType } from '@nestjs/graphql';
import { Task } from '../graphql/enums';

@ObjectType()
export class Variant {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field({ description: 'GPU the variant was optimized for ("any" when not GPU-specific).' }) gpu!: string;
  @Field() engine!: string;
  @Field(() => String, { nullable: true }) quantization!: string | null;
  @Field(() => Int, { description: 'Concurrent requests one replica serves at most.' }) maxConcurrency!: number;
  @Field(() => Int, { nullable: true, description: 'Measured scaler target; null means the task default.' }) targetConcurrency!:
    number | null;
  @Field(() => Float, { nullable: true }) throughputTps!: number | null;
  @Field(() => Float, { nullable: true }) latencyP50Ms!: number | null;
  @Field() isDefault!: boolean;
  @Field() createdAt!: Date;
}

@ObjectType()
export class Pipeline {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => Task) task!: Task;
  @Field() model!: string;
  @Field(() => ID, { nullable: true }) selectedVariantId!: string | null;
  @Field() createdAt!: Date;
}

@InputType()
export class CreatePipelineInput {
  @Field({ description: 'Unique in the workspace: letters, digits, ., _ and -.' }) name!: string;
  @Field(() => Task) task!: Task;
  @Field({ description: 'Model the serving engine loads, e.g. meta-llama/Llama-3.1-8B-Instruct or sim/tiny-chat.' }) model!: string;
  @Field({ nullable: true, description: 'GPU the default variant targets; "any" when omitted.' }) gpu?: string;
  @Field({ nullable: true, description: 'Serving engine of the default variant; "vllm" when omitted.' }) engine?: string;
}
